"""CreateImageRequest: every rule of the reference (one failing example each) and botocore agreement."""

from __future__ import annotations

import functools
import re
import string

import botocore.serialize
import botocore.session
import pytest
from botocore.validate import ParamValidator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_imagebuilder._decisions.fields import (
    CONTAINER_RECIPE_ARN_PATTERN,
    DISTRIBUTION_CONFIGURATION_ARN_PATTERN,
    ECMA_SPACE,
    EXECUTION_ROLE_PATTERN,
    IMAGE_BUILD_VERSION_ARN_PATTERN,
    IMAGE_PIPELINE_ARN_PATTERN,
    IMAGE_RECIPE_ARN_PATTERN,
    INFRASTRUCTURE_CONFIGURATION_ARN_PATTERN,
    LOG_GROUP_NAME_PATTERN,
    NO_NUL_PATTERN,
    PARALLEL_GROUP_PATTERN,
    PATTERN_RULES,
    REQUEST_FIELDS,
    TAG_KEY_PATTERN,
    WORKFLOW_ARN_PATTERN,
    service_pattern,
)
from airflow_imagebuilder.models import (
    CreateImageRequest,
    InvalidCreateImageRequest,
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
    ("clientToken", {"clientToken": None}, "client_token is required"),
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
    (
        "imageScanningConfiguration",
        {"imageScanningConfiguration": {"scanEverything": True}},
        ".scanEverything is not a known field",
    ),
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
    ("workflows", {"workflows": [{}]}, "workflows[0].workflowArn is required"),
    (
        "workflows",
        {"workflows": [{"workflowArn": "arn:aws:imagebuilder:us-east-1:aws:workflow/deploy/x/1.0.0"}]},
        "pattern",
    ),
    ("workflows", {"workflows": [{"workflowArn": WORKFLOW_ARN, "parameters": []}]}, "at least 1"),
    (
        "workflows",
        {"workflows": [{"workflowArn": WORKFLOW_ARN, "parameters": [{"name": "p"}]}]},
        "parameters[0].value is required",
    ),
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
        "must not contain a NUL character",
    ),
    ("workflows", {"workflows": [{"workflowArn": WORKFLOW_ARN, "parallelGroup": "-starts-with-dash"}]}, "pattern"),
    ("workflows", {"workflows": [{"workflowArn": WORKFLOW_ARN, "parallelGroup": "g" * 101}]}, "at most 100"),
    ("workflows", {"workflows": [{"workflowArn": WORKFLOW_ARN, "onFailure": "RETRY"}]}, "CONTINUE"),
    ("loggingConfiguration", {"loggingConfiguration": {"logGroupName": "bad group"}}, "pattern"),
    ("loggingConfiguration", {"loggingConfiguration": {"logGroupName": ""}}, "at least 1"),
    ("unknown", {"imageRecipeARN": IMAGE_RECIPE_ARN}, "imageRecipeARN is not a known field"),
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
    assert rule in message and "\\Z" not in message
    if field not in ("recipe", "unknown"):
        assert REQUEST_FIELDS[field] in message  # the operator's argument
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
    # botocore's patterns are ECMA 262 ($: end of input only); fields.py holds them as Python regexes (\\Z for $),
    # and messages show them (service_pattern) exactly as botocore's model writes them.
    members = {**operation_shapes("StartImagePipelineExecution")[0].members, **INPUT_SHAPE.members}
    workflow = members["workflows"].member.members
    shapes = {
        INFRASTRUCTURE_CONFIGURATION_ARN_PATTERN: members["infrastructureConfigurationArn"],
        IMAGE_RECIPE_ARN_PATTERN: members["imageRecipeArn"],
        CONTAINER_RECIPE_ARN_PATTERN: members["containerRecipeArn"],
        DISTRIBUTION_CONFIGURATION_ARN_PATTERN: members["distributionConfigurationArn"],
        EXECUTION_ROLE_PATTERN: members["executionRole"],
        IMAGE_PIPELINE_ARN_PATTERN: members["imagePipelineArn"],
        IMAGE_BUILD_VERSION_ARN_PATTERN: operation_shapes("GetImage")[0].members["imageBuildVersionArn"],
        TAG_KEY_PATTERN: members["tags"].key,
        WORKFLOW_ARN_PATTERN: workflow["workflowArn"],
        PARALLEL_GROUP_PATTERN: workflow["parallelGroup"],
        LOG_GROUP_NAME_PATTERN: members["loggingConfiguration"].members["logGroupName"],
    }
    for pattern, shape in shapes.items():
        assert pattern == python_pattern(shape.metadata["pattern"]), shape.name
        assert service_pattern(pattern) == shape.metadata["pattern"], shape.name
    assert set(PATTERN_RULES) == {*shapes, NO_NUL_PATTERN}  # every pattern has its rule in plain words


def test_the_request_fields_are_the_models_own():
    assert {info.alias: name for name, info in CreateImageRequest.model_fields.items()} == REQUEST_FIELDS
