"""Bad input never reaches AWS: generated requests, malformed XComs."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_imagebuilder._decisions.fields import REQUEST_FIELDS
from airflow_imagebuilder.exceptions import InvalidCreateImageRequest
from airflow_imagebuilder.operators import ImageBuilderCreateImageOperator, ImageBuilderStartPipelineExecutionOperator
from airflow_imagebuilder.sensors import ImageBuilderImageSensor
from tests.conftest import IMAGE_RECIPE_ARN, INFRASTRUCTURE_ARN, load_dag, task_states
from tests.test_models import RULES, valid_requests

SNAKE = REQUEST_FIELDS  # API name -> operator keyword
# A missing clientToken is a rule of the request model only (the operator always derives one), and an unknown
# top-level field is an unknown keyword argument for the operator (Airflow's own TypeError, tested below).
OPERATOR_RULES = [rule for rule in RULES if rule[1] != {"clientToken": None} and rule[0] != "unknown"]


def operator_kwargs(api: dict) -> dict:
    return {SNAKE[name]: value for name, value in api.items() if name in SNAKE}


@st.composite
def requests(draw):
    """A valid request, or one with a rule of the reference broken (about two thirds of the time)."""
    api = draw(valid_requests)
    rule = draw(st.one_of(st.none(), st.sampled_from(OPERATOR_RULES), st.sampled_from(OPERATOR_RULES)))
    if rule is not None:
        api = {**api, **rule[1]}
        if rule[2] == "neither was given":
            api.pop("containerRecipeArn", None)
        if rule[2] == "both were given":
            api["imageRecipeArn"] = IMAGE_RECIPE_ARN
        api = {name: value for name, value in api.items() if value is not None}
    return api, rule


@pytest.fixture(scope="module")
def journal_probe():
    from airflow_imagebuilder.testing import ImageBuilderEmulator

    with ImageBuilderEmulator() as emulator:
        yield emulator


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(requests())
def test_generated_requests_invalid_rejected_before_any_call(journal_probe, monkeypatch_module, case):
    api, rule = case
    kwargs = operator_kwargs(api)
    if rule is None:
        operator = ImageBuilderCreateImageOperator(task_id="t", **kwargs)  # valid: accepted at parse time
        assert operator._request()  # and after "rendering"
        return
    # Literal values: rejected when the DAG is parsed.
    if "infrastructureConfigurationArn" not in api:  # a required keyword argument: Python says so
        with pytest.raises(TypeError, match="infrastructure_configuration_arn"):
            ImageBuilderCreateImageOperator(task_id="t", **kwargs)
    with pytest.raises(InvalidCreateImageRequest) as parsed:
        ImageBuilderCreateImageOperator(task_id="t", **{"infrastructure_configuration_arn": None, **kwargs})
    # Templated values: rejected right after rendering, in execute, before the hook is touched.
    templated = dict.fromkeys(SNAKE.values(), "{{ placeholder }}")
    operator = ImageBuilderCreateImageOperator(task_id="t", **templated)
    for name in templated:
        setattr(operator, name, kwargs.get(name))
    with pytest.raises(InvalidCreateImageRequest) as rendered:
        operator.execute({})  # type: ignore[arg-type]  # fails before the context is used
    for error in (parsed.value, rendered.value):
        message = str(error)
        assert rule[2] in message
        if rule[0] not in ("recipe", "unknown"):
            assert SNAKE[rule[0]] in message
    assert journal_probe.journal() == []


_RECIPE_RULE = (
    r"^arn:aws[^:]*:imagebuilder:[^:]+:(?:[0-9]{12}|aws):image-recipe/[a-z0-9-_]+/"
    r"(?:[0-9]+|x)\.(?:[0-9]+|x)\.(?:[0-9]+|x)$"
)
_TAG_KEY_RULE = "must not start with 'aws:' and may contain only letters, digits, spaces and _.:/=+-@"
_PIPELINE = "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/p"


def _create(**kwargs):
    return ImageBuilderCreateImageOperator(task_id="t", infrastructure_configuration_arn=INFRASTRUCTURE_ARN, **kwargs)


def _start(**kwargs):
    return ImageBuilderStartPipelineExecutionOperator(task_id="t", **kwargs)


@pytest.mark.parametrize(
    ("define", "message"),
    [
        (
            lambda: _create(image_recipe_arn="not-an-arn"),
            f"t: image_recipe_arn='not-an-arn' must be an image recipe ARN (pattern {_RECIPE_RULE})",
        ),
        (
            lambda: _create(image_recipe_arn=IMAGE_RECIPE_ARN, tags={"aws:x": "v"}),
            rf"t: tags key 'aws:x' {_TAG_KEY_RULE} (pattern ^(?!aws:)[a-zA-Z0-9\s_.:/=+\-@]*$)",
        ),
        (
            lambda: _create(image_recipe_arn=IMAGE_RECIPE_ARN, tags={f"k{i}": "v" for i in range(51)}),
            "t: tags has 51 items; at most 50 are allowed",
        ),
        (
            lambda: _create(
                image_recipe_arn=IMAGE_RECIPE_ARN,
                image_scanning_configuration={"ecrConfiguration": {"repositoryName": ""}},
                image_tests_configuration={"timeoutMinutes": 5},
            ),
            "t: image_scanning_configuration.ecrConfiguration.repositoryName='' must have at least 1 character; "
            "image_tests_configuration.timeoutMinutes=5 must be greater than or equal to 60",
        ),
        (
            lambda: _create(
                image_recipe_arn=IMAGE_RECIPE_ARN,
                enhanced_image_metadata_enabled="maybe",
                image_tests_configuration={"timeoutMinutes": 90.5},
            ),
            "t: enhanced_image_metadata_enabled='maybe' must be a boolean, true or false; "
            "image_tests_configuration.timeoutMinutes=90.5 must be a whole number",
        ),
        (
            lambda: _start(image_pipeline_arn="arn:aws:s3:::b"),
            "t: image_pipeline_arn='arn:aws:s3:::b' must be an image pipeline ARN "
            "(pattern ^arn:aws[^:]*:imagebuilder:[^:]+:(?:[0-9]{12}|aws):image-pipeline/[a-z0-9-_]+$)",
        ),
        (
            lambda: _start(image_pipeline_arn=_PIPELINE, tags={f"k{i}": "v" for i in range(51)}),
            "t: tags has 51 items; at most 50 are allowed",
        ),
        (
            lambda: ImageBuilderImageSensor(task_id="t", image_build_version_arn={"recipe": "golden"})._checked_arn(),
            "t: image_build_version_arn={'recipe': 'golden'} must be an image build version ARN: "
            "arn:<partition>:imagebuilder:<region>:<account>:image/<name>/<x.y.z>/<build> (is the upstream XCom the "
            "ARN?)",
        ),
        (
            lambda: ImageBuilderImageSensor(task_id="t", image_build_version_arn="arn:aws:s3:::b")._checked_arn(),
            "t: image_build_version_arn='arn:aws:s3:::b' must be an image build version ARN: "
            "arn:<partition>:imagebuilder:<region>:<account>:image/<name>/<x.y.z>/<build> (is the upstream XCom the "
            "ARN?)",
        ),
    ],
)
def test_messages_name_the_argument_the_value_and_the_rule_in_plain_words(define, message):
    with pytest.raises(ValueError) as error:
        define()
    assert str(error.value) == message
    assert len(message) <= 200


def test_unknown_top_level_field_is_an_unknown_operator_argument():
    with pytest.raises(TypeError, match="image_recipe_ARN"):
        ImageBuilderCreateImageOperator(task_id="t", image_recipe_ARN="x", infrastructure_configuration_arn="y")


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.mark.usefixtures("airflow_db")
def test_malformed_xcom_inputs_fail_with_clear_messages(fast_emulator, capfd):
    dag = load_dag("bad_xcom.py", "ib_bad_xcom")
    dag_run = dag.test(logical_date=dt.datetime(2026, 7, 1, tzinfo=dt.timezone.utc))
    output = capfd.readouterr().out
    states = task_states(dag_run)
    assert states["create_from_dict"] == states["create_from_none"] == states["sensor_on_dict"] == "failed"
    assert "create_from_dict: image_recipe_arn={'recipe': 'golden'} must be a valid string" in output
    assert "exactly one recipe is required: set either image_recipe_arn or container_recipe_arn (neither" in output
    assert "image_build_version_arn={'recipe': 'golden'} must be an image build version ARN: arn:" in output
    assert fast_emulator.journal() == []


@pytest.mark.parametrize(
    ("api_retry", "message"),
    [
        ({"max_attempt": 3}, "api_retry: unknown keys ['max_attempt']; known: max_attempts, base_delay"),
        ({"max_attempts": 0}, "api_retry: max_attempts must be an integer of at least 1, got 0"),
        ({"max_attempts": "3"}, "api_retry: max_attempts must be an integer of at least 1, got '3'"),
        ({"in_use_attempts": 2.5}, "api_retry: in_use_attempts must be an integer of at least 1, got 2.5"),
        ({"max_attempts": 0.0}, "api_retry: max_attempts must be an integer of at least 1, got 0.0"),
        ({"base_delay": -1}, "api_retry: base_delay must be a finite number of seconds >= 0, got -1"),
        ({"max_elapsed": float("nan")}, "api_retry: max_elapsed must be a finite number of seconds >= 0, got nan"),
        ({"max_delay": float("inf")}, "api_retry: max_delay must be a finite number of seconds >= 0, got inf"),
        (5, "api_retry must be a dict of RetryPolicy fields, got int 5"),
    ],
)
def test_bad_api_retry_is_rejected_when_the_dag_is_parsed(api_retry, message):
    with pytest.raises(ValueError, match=f"^build: {re.escape(message)}"):
        ImageBuilderCreateImageOperator(
            task_id="build",
            image_recipe_arn=IMAGE_RECIPE_ARN,
            infrastructure_configuration_arn=INFRASTRUCTURE_ARN,
            api_retry=api_retry,
        )
    with pytest.raises(ValueError, match=f"^wait: {re.escape(message)}"):
        ImageBuilderImageSensor(task_id="wait", image_build_version_arn="arn:aws:imagebuilder:x", api_retry=api_retry)
