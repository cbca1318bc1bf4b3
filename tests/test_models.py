"""CreateImageRequest: every rule of the reference (one failing example each) and botocore agreement."""

from __future__ import annotations

import functools
import re
import string
import sys
from types import NoneType, UnionType
from typing import Annotated, Union, get_args, get_origin
from unittest import mock

import annotated_types
import botocore.serialize
import botocore.session
import pytest
from botocore.validate import ParamValidator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BeforeValidator
from pydantic.fields import FieldInfo

from airflow_imagebuilder import operators
from airflow_imagebuilder.fields import (
    ECMA_SPACE,
    LOG_GROUP_NAME_PATTERN,
    MAX_TAGS,
    PARALLEL_GROUP_PATTERN,
    PIPELINE_FIELD_RULES,
    PIPELINE_REQUIRED_FIELDS,
    PLAIN_FIELD_RULES,
    REQUEST_FIELDS,
    REQUIRED_FIELDS,
    TAG_KEY_RULE,
    TAG_VALUE_RULE,
    WORKFLOW_ARN_PATTERN,
    check_pipeline_request,
    check_request,
    plainly_valid,
)
from airflow_imagebuilder.models import (
    CreateImageRequest,
    InvalidCreateImageRequest,
    StartImagePipelineExecutionRequest,
    validate,
    validate_request,
)
from airflow_imagebuilder.testing.shapes import check_shape, operation_shapes, python_pattern
from tests.conftest import CONTAINER_RECIPE_ARN, DISTRIBUTION_ARN, IMAGE_RECIPE_ARN, INFRASTRUCTURE_ARN

VALID = {
    "clientToken": "token-1",
    "imageRecipeArn": IMAGE_RECIPE_ARN,
    "infrastructureConfigurationArn": INFRASTRUCTURE_ARN,
}
WORKFLOW_ARN = "arn:aws:imagebuilder:us-east-1:aws:workflow/build/build-image/1.0.0/1"
INPUT_SHAPE = operation_shapes("CreateImage")[0]


def test_full_request_round_trips_to_boto3_kwargs():
    api = {
        **VALID,
        "distributionConfigurationArn": DISTRIBUTION_ARN,
        "enhancedImageMetadataEnabled": False,
        "executionRole": "arn:aws:iam::123456789012:role/ImageBuilderExecution",
        "imageScanningConfiguration": {
            "imageScanningEnabled": True,
            "ecrConfiguration": {"repositoryName": "scans", "containerTags": ["a", "b"]},
        },
        "imageTestsConfiguration": {"imageTestsEnabled": True, "timeoutMinutes": 90},
        "tags": {"team": "platform", "cost-center": "42"},
        "workflows": [
            {
                "workflowArn": WORKFLOW_ARN,
                "parameters": [{"name": "p", "value": ["v"]}],
                "parallelGroup": "group-1",
                "onFailure": "ABORT",
            }
        ],
        "loggingConfiguration": {"logGroupName": "/aws/imagebuilder/golden"},
    }
    request = CreateImageRequest.model_validate(api)
    assert request.model_dump(by_alias=True, exclude_none=True) == api
    assert check_shape(api, INPUT_SHAPE) == []
    ParamValidator().validate(api, INPUT_SHAPE)  # raises on error


def test_snake_case_names_are_accepted_at_every_level():
    request = CreateImageRequest.model_validate(
        {
            "client_token": "t",
            "image_recipe_arn": IMAGE_RECIPE_ARN,
            "infrastructure_configuration_arn": INFRASTRUCTURE_ARN,
            "image_tests_configuration": {"image_tests_enabled": False},
            "workflows": [{"workflow_arn": WORKFLOW_ARN, "on_failure": "CONTINUE"}],
        }
    )
    assert request.to_api()["imageTestsConfiguration"] == {"imageTestsEnabled": False}
    assert request.to_api()["workflows"] == [{"workflowArn": WORKFLOW_ARN, "onFailure": "CONTINUE"}]


def test_service_accepts_more_than_the_reference_and_so_do_we():
    request = validate_request(
        {
            **VALID,
            "clientToken": "x" * 64,
            "imageRecipeArn": "arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/golden/1.x.x",
            "tags": {"Team 2 @ ops": "v"},
        }
    )
    assert request.client_token == "x" * 64


# One failing example per rule: (field, bad value or mutation, words the message must contain).
RULES = [
    ("clientToken", {"clientToken": ""}, "at least 1"),
    ("clientToken", {"clientToken": "x" * 65}, "at most 64"),
    ("clientToken", {"clientToken": None}, "clientToken"),
    ("infrastructureConfigurationArn", {"infrastructureConfigurationArn": None}, "required"),
    (
        "infrastructureConfigurationArn",
        {"infrastructureConfigurationArn": "arn:aws:imagebuilder:us-east-1:123:infrastructure-configuration/x"},
        "pattern",
    ),
    (
        "infrastructureConfigurationArn",
        {"infrastructureConfigurationArn": INFRASTRUCTURE_ARN.replace("build-infra", "Build_Infra")},
        "pattern",
    ),
    ("imageRecipeArn", {"imageRecipeArn": IMAGE_RECIPE_ARN.replace("1.0.0", "1.0")}, "pattern"),
    ("imageRecipeArn", {"imageRecipeArn": IMAGE_RECIPE_ARN.replace("image-recipe", "container-recipe")}, "pattern"),
    (
        "containerRecipeArn",
        {"imageRecipeArn": None, "containerRecipeArn": CONTAINER_RECIPE_ARN.replace("2.1.0", "v2")},
        "pattern",
    ),
    ("recipe", {"imageRecipeArn": None}, "neither was given"),
    ("recipe", {"containerRecipeArn": CONTAINER_RECIPE_ARN}, "both were given"),
    ("distributionConfigurationArn", {"distributionConfigurationArn": DISTRIBUTION_ARN + "/1.0.0"}, "pattern"),
    ("enhancedImageMetadataEnabled", {"enhancedImageMetadataEnabled": "sometimes"}, "boolean"),
    ("executionRole", {"executionRole": ""}, "at least 1"),
    ("executionRole", {"executionRole": "r" * 2049}, "at most 2048"),
    ("executionRole", {"executionRole": "role with spaces"}, "pattern"),
    ("imageScanningConfiguration", {"imageScanningConfiguration": {"imageScanningEnabled": "maybe"}}, "boolean"),
    (
        "imageScanningConfiguration",
        {"imageScanningConfiguration": {"ecrConfiguration": {"repositoryName": ""}}},
        "at least 1",
    ),
    (
        "imageScanningConfiguration",
        {"imageScanningConfiguration": {"ecrConfiguration": {"containerTags": [""]}}},
        "at least 1",
    ),
    ("imageScanningConfiguration", {"imageScanningConfiguration": {"scanEverything": True}}, "not a field"),
    ("imageTestsConfiguration", {"imageTestsConfiguration": {"timeoutMinutes": 59}}, "greater than or equal to 60"),
    ("imageTestsConfiguration", {"imageTestsConfiguration": {"timeoutMinutes": 1441}}, "less than or equal to 1440"),
    ("imageTestsConfiguration", {"imageTestsConfiguration": {"imageTestsEnabled": "perhaps"}}, "boolean"),
    ("tags", {"tags": {}}, "at least 1"),
    ("tags", {"tags": {f"k{i}": "v" for i in range(51)}}, "at most 50"),
    ("tags", {"tags": {"aws:reserved": "v"}}, "pattern"),
    ("tags", {"tags": {"unit\x1f": "v"}}, "pattern"),  # a space to Python's \s, not to ECMA's
    ("tags", {"tags": {"": "v"}}, "at least 1"),
    ("tags", {"tags": {"k" * 129: "v"}}, "at most 128"),
    ("tags", {"tags": {"bad#key": "v"}}, "pattern"),
    ("tags", {"tags": {"k": "v" * 257}}, "at most 256"),
    ("tags", {"tags": ["k", "v"]}, "mapping"),
    ("workflows", {"workflows": [{}]}, "workflowArn: is required"),
    (
        "workflows",
        {"workflows": [{"workflowArn": "arn:aws:imagebuilder:us-east-1:aws:workflow/deploy/x/1.0.0"}]},
        "pattern",
    ),
    ("workflows", {"workflows": [{"workflowArn": WORKFLOW_ARN, "parameters": []}]}, "at least 1"),
    ("workflows", {"workflows": [{"workflowArn": WORKFLOW_ARN, "parameters": [{"name": "p"}]}]}, "value: is required"),
    (
        "workflows",
        {"workflows": [{"workflowArn": WORKFLOW_ARN, "parameters": [{"name": "", "value": []}]}]},
        "at least 1",
    ),
    (
        "workflows",
        {"workflows": [{"workflowArn": WORKFLOW_ARN, "parameters": [{"name": "n" * 129, "value": []}]}]},
        "at most 128",
    ),
    (
        "workflows",
        {"workflows": [{"workflowArn": WORKFLOW_ARN, "parameters": [{"name": "a\x00b", "value": []}]}]},
        "pattern",
    ),
    ("workflows", {"workflows": [{"workflowArn": WORKFLOW_ARN, "parallelGroup": "-starts-with-dash"}]}, "pattern"),
    ("workflows", {"workflows": [{"workflowArn": WORKFLOW_ARN, "parallelGroup": "g" * 101}]}, "at most 100"),
    ("workflows", {"workflows": [{"workflowArn": WORKFLOW_ARN, "onFailure": "RETRY"}]}, "CONTINUE"),
    ("loggingConfiguration", {"loggingConfiguration": {"logGroupName": "bad group"}}, "pattern"),
    ("loggingConfiguration", {"loggingConfiguration": {"logGroupName": ""}}, "at least 1"),
    ("unknown", {"imageRecipeARN": IMAGE_RECIPE_ARN}, "not a field of CreateImage"),
    # The service's patterns are ECMA 262, whose $ does not match before a final newline as Python's does.
    ("imageRecipeArn", {"imageRecipeArn": IMAGE_RECIPE_ARN + "\n"}, "pattern"),
    ("containerRecipeArn", {"imageRecipeArn": None, "containerRecipeArn": CONTAINER_RECIPE_ARN + "\n"}, "pattern"),
    ("infrastructureConfigurationArn", {"infrastructureConfigurationArn": INFRASTRUCTURE_ARN + "\n"}, "pattern"),
    ("distributionConfigurationArn", {"distributionConfigurationArn": DISTRIBUTION_ARN + "\n"}, "pattern"),
    ("executionRole", {"executionRole": "ImageBuilderExecution\n"}, "pattern"),
    ("workflows", {"workflows": [{"workflowArn": WORKFLOW_ARN + "\n"}]}, "pattern"),
    ("workflows", {"workflows": [{"workflowArn": WORKFLOW_ARN, "parallelGroup": "group\n"}]}, "pattern"),
    ("loggingConfiguration", {"loggingConfiguration": {"logGroupName": "group\n"}}, "pattern"),
]


@pytest.mark.parametrize(("field", "change", "rule"), RULES, ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(RULES)])
def test_each_rule_has_a_failing_example_with_a_clear_message(field, change, rule):
    data = {**VALID, **change}
    data = {key: value for key, value in data.items() if value is not None}
    with pytest.raises(InvalidCreateImageRequest) as caught:
        validate_request(data)
    message = str(caught.value)
    assert rule in message
    if field not in ("recipe", "unknown"):
        assert field in message
    # the service model agrees the request is invalid; the exceptions are rules the model does not express
    # (one recipe, JSON types) and NUL inside a workflow parameter name, which the model's unanchored
    # pattern [^\x00]+ lets through after another character but which is never meant.
    assert (
        check_shape(data, INPUT_SHAPE)
        or rule in ("neither was given", "both were given", "boolean")
        or "\\x00" in repr(change)
    )


# ------------------------------------------------------------------------- property: valid => botocore accepts
_slug = st.text(alphabet=string.ascii_lowercase + string.digits + "-_", min_size=1, max_size=20)
_version = st.tuples(*[st.one_of(st.integers(0, 99).map(str), st.just("x"))] * 3).map(".".join)
_region = st.sampled_from(["us-east-1", "eu-west-3", "ap-southeast-2"])
_account = st.sampled_from(["123456789012", "aws"])


def _arn(kind, with_version=False):
    parts = [_region, _account, _slug] + ([_version] if with_version else [])
    return st.tuples(*parts).map(
        lambda p: f"arn:aws:imagebuilder:{p[0]}:{p[1]}:{kind}/{p[2]}" + (f"/{p[3]}" if with_version else "")
    )


_tag_key = st.text(alphabet=string.ascii_letters + string.digits + " _.:/=+-@", min_size=1, max_size=128).filter(
    lambda key: not key.startswith("aws:")
)
valid_requests = st.fixed_dictionaries(
    {
        "clientToken": st.text(alphabet=string.printable, min_size=1, max_size=64),
        "infrastructureConfigurationArn": _arn("infrastructure-configuration"),
    },
    optional={
        "distributionConfigurationArn": _arn("distribution-configuration"),
        "enhancedImageMetadataEnabled": st.booleans(),
        "executionRole": st.text(alphabet=string.ascii_letters + string.digits + "+=,.@-_/", min_size=1, max_size=64),
        "imageTestsConfiguration": st.fixed_dictionaries(
            {}, optional={"imageTestsEnabled": st.booleans(), "timeoutMinutes": st.integers(60, 1440)}
        ),
        "imageScanningConfiguration": st.fixed_dictionaries(
            {},
            optional={
                "imageScanningEnabled": st.booleans(),
                "ecrConfiguration": st.fixed_dictionaries(
                    {}, optional={"repositoryName": _slug, "containerTags": st.lists(_slug, max_size=3)}
                ),
            },
        ),
        "tags": st.dictionaries(_tag_key, st.text(max_size=256), min_size=1, max_size=50),
        "workflows": st.lists(
            st.fixed_dictionaries(
                {"workflowArn": st.just(WORKFLOW_ARN)},
                optional={
                    "parameters": st.lists(
                        st.fixed_dictionaries(
                            {
                                "name": st.text(alphabet=string.ascii_letters, min_size=1, max_size=128),
                                "value": st.lists(st.text(alphabet=string.printable, max_size=10), max_size=3),
                            }
                        ),
                        min_size=1,
                        max_size=3,
                    ),
                    "onFailure": st.sampled_from(["CONTINUE", "ABORT"]),
                    "parallelGroup": st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9\-_+#]{0,20}\Z"),
                },
            ),
            max_size=3,
        ),
        "loggingConfiguration": st.fixed_dictionaries({"logGroupName": st.from_regex(r"\A[a-zA-Z0-9\-_/.]{1,40}\Z")}),
    },
).flatmap(
    lambda base: st.one_of(
        _arn("image-recipe", True).map(lambda arn: {**base, "imageRecipeArn": arn}),
        _arn("container-recipe", True).map(lambda arn: {**base, "containerRecipeArn": arn}),
    )
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_requests)
def test_every_valid_request_passes_botocore_validation(data):
    api = validate_request(data).to_api()
    assert api == data
    report = ParamValidator().validate(api, INPUT_SHAPE)
    assert not report.has_errors(), report.generate_report()
    assert check_shape(api, INPUT_SHAPE) == []  # patterns and enums too, which botocore does not check
    # and botocore's rest-json serializer turns it into an HTTP request
    assert _serializer().serialize_to_request(api, INPUT_OPERATION)["body"]


INPUT_OPERATION = botocore.session.get_session().get_service_model("imagebuilder").operation_model("CreateImage")


@functools.cache
def _serializer():
    return botocore.serialize.create_serializer("rest-json")


# ------------------------------------------------- check_request: the parse-time check without building a model
def _outcome(check, data):
    try:
        check(data)
    except InvalidCreateImageRequest as error:
        return str(error)
    return None


def _constraints(annotation, metadata=()):
    """A field's type without Optional and Annotated, and the constraints those carried."""
    metadata = list(metadata)
    if get_origin(annotation) in (Union, UnionType):
        members = [member for member in get_args(annotation) if member is not NoneType]
        if len(members) != 1:
            return None, metadata
        annotation = members[0]
    if get_origin(annotation) is Annotated:
        annotation, *extras = get_args(annotation)
        for extra in extras:
            metadata.extend(extra.metadata if isinstance(extra, FieldInfo) else [extra])
    return annotation, metadata


def _plain_rule(info: FieldInfo):
    """The rule of a field that takes a plain string or boolean, read from the model's definition, in the form of
    fields.PLAIN_FIELD_RULES; None for any other field."""
    annotation, metadata = _constraints(info.annotation, info.metadata)
    return _string_rule(annotation, metadata)


def _string_rule(annotation, metadata):
    if annotation is bool and not metadata:
        return bool
    if annotation is not str:
        return None
    pattern, low, high = None, 0, sys.maxsize
    for item in metadata:
        if isinstance(item, annotated_types.MinLen):
            low = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            high = item.max_length
        elif getattr(item, "__dict__", {}).keys() == {"pattern"} and isinstance(item.pattern, str):
            pattern = item.pattern
        else:
            raise AssertionError(f"a constraint the fast path does not know: {item!r}")
    return pattern, low, high


@pytest.mark.parametrize(
    ("model", "rules", "required"),
    [
        (CreateImageRequest, PLAIN_FIELD_RULES, REQUIRED_FIELDS),
        (StartImagePipelineExecutionRequest, PIPELINE_FIELD_RULES, PIPELINE_REQUIRED_FIELDS),
    ],
    ids=["CreateImage", "StartImagePipelineExecution"],
)
def test_the_parse_time_tables_are_the_models_own(model, rules, required):
    # fields.py holds the models' rules as plain tables, so DAG parsing needs no pydantic: they must not drift.
    model_fields = model.model_fields
    assert {info.alias for info in model_fields.values() if info.is_required()} == required
    derived = {info.alias: rule for info in model_fields.values() if (rule := _plain_rule(info)) is not None}
    assert derived == rules
    tags, tags_metadata = _constraints(model_fields["tags"].annotation, model_fields["tags"].metadata)
    assert get_origin(tags) is dict
    counts = [item for item in tags_metadata if isinstance(item, (annotated_types.MinLen, annotated_types.MaxLen))]
    assert counts == [annotated_types.MinLen(1), annotated_types.MaxLen(MAX_TAGS)]
    assert [type(item) for item in tags_metadata if item not in counts] == [BeforeValidator]  # "is a mapping"
    key, value = (_string_rule(*_constraints(member)) for member in get_args(tags))
    assert (key, value) == (TAG_KEY_RULE, TAG_VALUE_RULE)
    # The fast paths know one rule across fields: exactly one recipe, for CreateImage.
    decorators = model.__pydantic_decorators__
    assert decorators.model_validators.keys() == ({"_exactly_one_recipe"} if model is CreateImageRequest else set())
    assert not (decorators.field_validators or decorators.validators or decorators.root_validators)


@pytest.mark.parametrize(
    ("ecma", "python", "matches", "misses"),
    [
        (r"^a$", r"^a\Z", ["a"], ["a\n", "ab"]),
        (r"^[\w+=]+$", r"^[A-Za-z0-9_+=]+\Z", ["a_1+="], ["é", "a-b"]),
        (r"^\s\d$", r"^[" + ECMA_SPACE + r"][0-9]\Z", [" 1", "\ufeff2"], ["\x1f1", "\x851", " \u0661"]),
        (r"^[$]\$$", r"^[$]\$\Z", ["$$"], ["$$\n"]),
        (r"^a.b$", r"^a[^\n\r\u2028\u2029]b\Z", ["a b", "a\x85b"], ["a\rb", "a\u2028b"]),
        (r"^\S[\w-.]$", r"^[^" + ECMA_SPACE + r"][A-Za-z0-9_\-.]$".replace("$", "\\Z"), ["a-", "\x1f."], [" a", "aé"]),
    ],
)
def test_service_patterns_read_as_ecma_262_says(ecma, python, matches, misses):
    assert python_pattern(ecma) == python
    compiled = re.compile(python)
    assert all(compiled.search(value) for value in matches)
    assert not any(compiled.search(value) for value in misses)


@pytest.mark.parametrize("pattern", [r"[]a]", r"[^]", r"[\S]"])
def test_service_patterns_without_a_plain_python_reading_are_refused(pattern):
    with pytest.raises(ValueError, match="not translated"):
        python_pattern(pattern)


def test_the_patterns_are_the_service_models_own():
    # botocore's patterns are ECMA 262 ($: end of input only); fields.py holds them as Python regexes (\\Z for $).
    members = {**operation_shapes("StartImagePipelineExecution")[0].members, **INPUT_SHAPE.members}
    for name, rule in {**PLAIN_FIELD_RULES, **PIPELINE_FIELD_RULES}.items():
        if isinstance(rule, tuple) and rule[0] is not None:
            assert rule[0] == python_pattern(members[name].metadata["pattern"]), name
    assert TAG_KEY_RULE[0] == python_pattern(members["tags"].key.metadata["pattern"])
    workflow = members["workflows"].member.members
    assert python_pattern(workflow["workflowArn"].metadata["pattern"]) == WORKFLOW_ARN_PATTERN
    assert python_pattern(workflow["parallelGroup"].metadata["pattern"]) == PARALLEL_GROUP_PATTERN
    logging = members["loggingConfiguration"].members
    assert python_pattern(logging["logGroupName"].metadata["pattern"]) == LOG_GROUP_NAME_PATTERN


def test_the_request_fields_are_the_models_own():
    assert {info.alias: name for name, info in CreateImageRequest.model_fields.items()} == REQUEST_FIELDS


PIPELINE_ARN = "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/nightly"


@pytest.mark.parametrize(
    "data",
    [
        {"clientToken": "t", "imagePipelineArn": PIPELINE_ARN},
        {"clientToken": "t", "imagePipelineArn": PIPELINE_ARN, "tags": {"team": "platform"}},
        {"clientToken": "t", "imagePipelineArn": PIPELINE_ARN + "/1.0.0"},
        {"clientToken": "t", "imagePipelineArn": PIPELINE_ARN + "\n"},
        {"clientToken": "t", "imagePipelineArn": PIPELINE_ARN, "tags": {}},
        {"clientToken": "t", "imagePipelineArn": PIPELINE_ARN, "tags": {"aws:x": "v"}},
        {"clientToken": "t" * 65, "imagePipelineArn": PIPELINE_ARN},
        {"clientToken": "t"},
        {"clientToken": "t", "imagePipelineArn": PIPELINE_ARN, "imageRecipeArn": IMAGE_RECIPE_ARN},
        {"clientToken": "t", "imagePipelineArn": 42},
    ],
)
def test_check_pipeline_request_raises_what_the_model_raises(data):
    source = "StartImagePipelineExecution request"
    expected = _outcome(lambda data: validate(StartImagePipelineExecutionRequest, data, source), data)
    assert _outcome(lambda data: check_pipeline_request(data, source), data) == expected


def test_plain_rules_cover_every_plain_field():
    # Without a rule a field still validates (through the model), only slower: this pins the fast path's reach.
    assert set(PLAIN_FIELD_RULES) == {
        "clientToken",
        "infrastructureConfigurationArn",
        "imageRecipeArn",
        "containerRecipeArn",
        "distributionConfigurationArn",
        "executionRole",
        "enhancedImageMetadataEnabled",
    }
    assert PLAIN_FIELD_RULES["enhancedImageMetadataEnabled"] is bool
    assert PLAIN_FIELD_RULES["clientToken"] == (None, 1, 64)


@pytest.mark.parametrize(("field", "change", "rule"), RULES, ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(RULES)])
def test_check_request_raises_what_the_model_raises(field, change, rule):
    data = {key: value for key, value in {**VALID, **change}.items() if value is not None}
    assert _outcome(check_request, data) == _outcome(validate_request, data) is not None


_near_plain_values = st.one_of(
    valid_requests.map(lambda data: data.get("imageRecipeArn") or data.get("containerRecipeArn")),
    _arn("infrastructure-configuration"),
    _arn("distribution-configuration"),
    _arn("image-recipe", True),
    _arn("container-recipe", True),
    st.text(max_size=70),
    st.text(alphabet=string.printable, max_size=70),
    st.sampled_from(["", "\ud800", "token\n", "x" * 64, "x" * 65, "arn:aws:iam::123456789012:role/r", "ADMIN"]),
)


_near_plain_tags = st.one_of(
    st.dictionaries(_tag_key, st.text(max_size=256), min_size=1, max_size=3),
    st.dictionaries(
        st.one_of(_tag_key, st.sampled_from(["", "aws:x", "k" * 128, "k" * 129, "é", "bad#key", "k\n", " "])),
        st.one_of(st.text(max_size=3), st.sampled_from(["v" * 256, "v" * 257, "\ud800", "é", ""]), st.integers()),
        max_size=3,
    ),
    st.sampled_from([{f"k{i}": "v" for i in range(50)}, {f"k{i}": "v" for i in range(51)}, ["k", "v"], "k=v"]),
)


@st.composite
def _plain_requests(draw):
    """A request of plain values, each one valid, mutated, or arbitrary text, in any plain field, and tags."""
    data = dict(
        draw(st.sampled_from([VALID, {**VALID, "imageRecipeArn": None, "containerRecipeArn": CONTAINER_RECIPE_ARN}]))
    )
    for name in draw(st.lists(st.sampled_from(sorted(PLAIN_FIELD_RULES)), max_size=3)):
        value = draw(_near_plain_values)
        if draw(st.booleans()):  # a small edit of a valid value
            value = draw(st.sampled_from([value + "\n", value.upper(), value + "é", value[:-1], value + "/1.0.0"]))
        data[name] = draw(st.booleans()) if name == "enhancedImageMetadataEnabled" and draw(st.booleans()) else value
    if draw(st.booleans()):
        data["tags"] = draw(_near_plain_tags)
    return {key: value for key, value in data.items() if value is not None}


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_plain_requests())
def test_check_request_agrees_with_the_model_on_plain_requests(data):
    assert _outcome(check_request, data) == _outcome(validate_request, data)
    if plainly_valid(data):
        validate_request(data)


def _operator_attributes(data, templated):
    """An operator's request attributes for the API-named ``data``, the fields in ``templated`` as Jinja."""
    attributes = dict.fromkeys(REQUEST_FIELDS.values())
    for name, value in data.items():
        attributes[REQUEST_FIELDS[name]] = "{{ params.value }}" if name in templated else value
    return attributes


def _full_parse_time_check(attributes):
    """The operator's parse-time check without its one-pass shortcut."""
    with mock.patch.object(operators, "_plainly_valid_literals", return_value=False):
        operators.ImageBuilderCreateImageOperator._validate_literal_fields(attributes, "CreateImage request")


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_plain_requests(), st.sets(st.sampled_from(sorted(REQUEST_FIELDS)), max_size=3))
def test_the_operators_one_pass_check_passes_only_what_the_full_check_passes(data, templated):
    attributes = _operator_attributes(data, templated)
    if operators._plainly_valid_literals(attributes):
        _full_parse_time_check(attributes)


@pytest.mark.parametrize(
    "templated",
    [set(), {"imageRecipeArn"}, {"tags"}, {"clientToken", "infrastructureConfigurationArn"}],
)
def test_the_operators_one_pass_check_takes_the_common_shapes(templated):
    data = {**VALID, "tags": {"team": "images"}, "enhancedImageMetadataEnabled": True}
    assert operators._plainly_valid_literals(_operator_attributes(data, templated))
    # ...and leaves any other shape to the full check: a dict field, a bool field templated, two recipes.
    for other in ({"workflows": []}, {"enhancedImageMetadataEnabled": "{{ x }}"}, {"containerRecipeArn": "x"}):
        assert not operators._plainly_valid_literals(
            {
                **_operator_attributes(data, templated),
                **{REQUEST_FIELDS.get(name, name): value for name, value in other.items()},
            }
        )
