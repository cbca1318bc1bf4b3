"""Pure logic, no HTTP and no sleep: the wait step, its events, the error classification and the call retries."""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid
from types import SimpleNamespace
from unittest import mock

import botocore.exceptions
import pytest

from airflow_imagebuilder._decisions.retry import (
    AUTH_CODES,
    ERROR_ACTIONS,
    CallRetry,
    ErrorAction,
    ErrorAnswer,
    RetryPolicy,
    api_error,
    classify,
)
from airflow_imagebuilder._decisions.states import FAILURE_STATES, IN_PROGRESS_STATES
from airflow_imagebuilder._decisions.token import derive_client_token
from airflow_imagebuilder._decisions.waiting import (
    Outcome,
    Poll,
    Step,
    TransitionLog,
    next_step,
    with_cancel_note,
)
from airflow_imagebuilder.exceptions import (
    ImageBuilderApiError,
    ImageBuilderError,
    ImageBuilderRequestRejected,
    ImageBuildFailedError,
    ImageBuildTimeoutError,
    ImageNotFoundError,
    InvalidCreateImageRequest,
)
from airflow_imagebuilder.models import validate_request
from airflow_imagebuilder.triggers import resolve_event
from tests.conftest import IMAGE_RECIPE_ARN, INFRASTRUCTURE_ARN

ARN = "arn:aws:imagebuilder:us-east-1:123456789012:image/golden-base/1.0.0/1"


def image(status: str, reason: str | None = None, **extra) -> dict:
    state = {"status": status} | ({"reason": reason} if reason else {})
    return {"arn": ARN, "state": state, **extra}


def client_error(code: str, status: int = 400, message: str = "no") -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"RequestId": "req-1", "HTTPStatusCode": status},
        },
        "GetImage",
    )


def error_of(code: str, status: int = 400) -> ImageBuilderApiError:
    return api_error("GetImage", ErrorAnswer.of(client_error(code, status)), attempts=1, conn_id="aws_default")


# ------------------------------------------------------------------------------------------ the wait step
@pytest.mark.parametrize("status", sorted(IN_PROGRESS_STATES))
def test_in_progress_statuses_keep_waiting(status):
    step = next_step(ARN, Poll(image=image(status)), elapsed=5, attempt=3, max_attempts=10)
    assert step.outcome is Outcome.WAITING and step.state.status == status


def test_available_succeeds_with_the_outputs():
    amis = [{"region": "eu-west-1", "image": "ami-1", "name": "n", "accountId": "1"}]
    step = next_step(ARN, Poll(image=image("AVAILABLE", outputResources={"amis": amis})), elapsed=5)
    assert step.outcome is Outcome.SUCCEEDED
    assert step.outputs == {
        "amis": amis,
        "ami_ids": {"eu-west-1": "ami-1"},
        "container_image_uris": [],
        "container_image_uris_by_region": {},
    }


def test_container_image_uris_are_given_flat_and_per_region():
    containers = [
        {"region": "us-east-1", "imageUris": ["1.dkr.ecr.us-east-1.amazonaws.com/base:2.1.0-1"]},
        {"region": "eu-west-1", "imageUris": ["1.dkr.ecr.eu-west-1.amazonaws.com/base:2.1.0-1"]},
    ]
    step = next_step(ARN, Poll(image=image("AVAILABLE", outputResources={"containers": containers})), elapsed=5)
    assert step.outputs["container_image_uris"] == [uri for c in containers for uri in c["imageUris"]]
    assert step.outputs["container_image_uris_by_region"] == {c["region"]: c["imageUris"] for c in containers}
    assert step.outputs["amis"] == [] and step.outputs["ami_ids"] == {}


@pytest.mark.parametrize("status", sorted(FAILURE_STATES))
def test_failure_statuses_fail_with_the_reason_verbatim(status):
    failed = image(status, "Workflow Execution ID: wf-1 failed with reason: step X")
    failed["state"]["failureContext"] = "ctx"
    step = next_step(ARN, Poll(image=failed), elapsed=5)
    assert step.outcome is Outcome.FAILED
    assert (
        step.message == f"Image {ARN} ended with status {status}: Workflow Execution ID: wf-1 failed with reason: "
        "step X [failureContext: ctx]"
    )


def test_an_unknown_status_keeps_waiting_and_times_out_like_any_other():
    assert next_step(ARN, Poll(image=image("REHYDRATING")), elapsed=1, attempt=1, max_attempts=2).outcome is (
        Outcome.WAITING
    )
    step = next_step(ARN, Poll(image=image("REHYDRATING")), elapsed=1, attempt=2, max_attempts=2, waiter_delay=30)
    assert step.outcome is Outcome.TIMED_OUT and "within 2 polls 30s apart" in step.message


def test_not_found_is_eventual_consistency_until_the_grace_ends():
    assert next_step(ARN, Poll.not_found(), elapsed=119, not_found_grace=120).outcome is Outcome.WAITING
    step = next_step(ARN, Poll.not_found(), elapsed=121, not_found_grace=120)
    assert step.outcome is Outcome.NOT_FOUND and "after more than 120s" in step.message


def test_transient_errors_keep_waiting_other_errors_end_the_wait_at_once():
    for code, status in [("CallRateLimitExceededException", 429), ("ServiceUnavailableException", 503)]:
        assert next_step(ARN, Poll(error=error_of(code, status)), elapsed=1).outcome is Outcome.WAITING
    for code in ["UnrecognizedClientException", "AccessDeniedException", "InvalidParameterValueException", "Odd"]:
        step = next_step(ARN, Poll(error=error_of(code, 403)), elapsed=1, attempt=1, max_attempts=100)
        assert step.outcome is Outcome.REJECTED and code in step.message
    step = next_step(ARN, Poll(error=error_of("ServiceQuotaExceededException", 402)), elapsed=1)
    assert step.outcome is Outcome.API_ERROR


def test_auth_errors_carry_a_hint_naming_the_connection_and_permissions():
    message = str(error_of("UnrecognizedClientException", 403))
    assert "connection 'aws_default'" in message and "imagebuilder:GetImage" in message and "req-1" in message


# A step of every kind the trigger can fire, and the exception the sync path raises for it.
FINAL_STEPS = {
    "success": (next_step(ARN, Poll(image=image("AVAILABLE")), elapsed=1), None),
    "failure": (next_step(ARN, Poll(image=image("FAILED", "boom")), elapsed=1), ImageBuildFailedError),
    "cancelled": (next_step(ARN, Poll(image=image("CANCELLED")), elapsed=1), ImageBuildFailedError),
    "timeout": (
        with_cancel_note(next_step(ARN, Poll(image=image("BUILDING")), elapsed=1, attempt=3, max_attempts=3), True),
        ImageBuildTimeoutError,
    ),
    "not_found": (next_step(ARN, Poll.not_found(), elapsed=200), ImageNotFoundError),
    "rejected": (
        next_step(ARN, Poll(error=error_of("AccessDeniedException", 403)), elapsed=1),
        ImageBuilderRequestRejected,
    ),
    "api_error": (next_step(ARN, Poll(error=error_of("ExpiredTokenException", 400)), elapsed=1), ImageBuilderApiError),
}


@pytest.mark.parametrize("name", sorted(FINAL_STEPS))
def test_every_event_becomes_the_sync_paths_exception_with_the_same_message(name):
    step, exception_class = FINAL_STEPS[name]
    event = step.to_event()
    assert Step.from_event(event) == step
    if exception_class is None:
        assert resolve_event(event) == step.raise_for_outcome()
        return
    with pytest.raises(exception_class) as sync_error:
        step.raise_for_outcome()
    with pytest.raises(exception_class) as deferred_error:
        resolve_event(event)
    assert type(sync_error.value) is type(deferred_error.value)
    assert str(sync_error.value) == str(deferred_error.value)


@pytest.mark.parametrize(
    "event", [None, {}, {"status": "success"}, {"status": "bogus", "image_build_version_arn": ARN}]
)
def test_malformed_events_raise_a_provider_error(event):
    with pytest.raises(ImageBuilderError, match="ImageBuilderImageTrigger"):
        resolve_event(event)


def test_cancel_notes_say_what_became_of_a_timed_out_build():
    step = next_step(ARN, Poll(image=image("BUILDING")), elapsed=1, attempt=1, max_attempts=1)
    assert with_cancel_note(step, True).message.endswith("the build was cancelled")
    assert with_cancel_note(step, False).message.endswith("the build had already ended")
    assert with_cancel_note(step, None).message.endswith("left running (cancel_on_kill=False)")
    assert with_cancel_note(step, RuntimeError("503")).message.endswith("cancelling the build failed: 503")


# ------------------------------------------------------------------------------------------ classification
@pytest.mark.parametrize("code", sorted(ERROR_ACTIONS))
def test_every_code_of_the_error_table_has_its_action(code):
    action = classify(code)
    assert action is ERROR_ACTIONS[code]
    assert action.keeps_waiting == (action in (ErrorAction.RETRY, ErrorAction.RETRY_BRIEFLY))


def test_unknown_codes_are_rejected_unless_the_service_answered_429_or_5xx():
    assert classify("SomethingNewException") is ErrorAction.REJECT
    assert classify("SomethingNewException", 400) is ErrorAction.REJECT
    assert classify("SomethingNewException", 502) is ErrorAction.RETRY
    assert classify("SomethingNewException", 429) is ErrorAction.RETRY


def test_auth_codes_are_never_retried():
    assert {classify(code) for code in AUTH_CODES} <= {ErrorAction.REJECT, ErrorAction.REFRESH_CREDENTIALS}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def retry_for(policy: RetryPolicy, clock: FakeClock | None = None) -> CallRetry:
    return CallRetry(policy, "CreateImage", "aws_default", clock or FakeClock(), rng=lambda low, high: 0.0)


def test_resource_in_use_is_counted_on_its_own_after_other_transient_errors():
    retry = retry_for(RetryPolicy(in_use_attempts=4))
    codes = [("CallRateLimitExceededException", 429)] * 3 + [
        ("ServiceException", 500),
        ("ServiceUnavailableException", 503),
    ]
    for code, status in [*codes, ("ResourceInUseException", 400)]:
        assert retry.failed(client_error(code, status)).delay > 0
    assert retry.attempts == 6


def test_resource_in_use_gives_up_after_its_brief_limit_with_a_retryable_error():
    retry = retry_for(RetryPolicy(in_use_attempts=3))
    retry.failed(client_error("ResourceInUseException"))
    retry.failed(client_error("ResourceInUseException"))
    with pytest.raises(ImageBuilderApiError) as error:
        retry.failed(client_error("ResourceInUseException"))
    assert not isinstance(error.value, ImageBuilderRequestRejected) and error.value.attempts == 3


def test_expired_token_gets_one_retry_with_fresh_credentials_then_a_hint():
    retry = retry_for(RetryPolicy())
    step = retry.failed(client_error("ExpiredTokenException"))
    assert step.refresh_credentials and step.delay == 0
    with pytest.raises(ImageBuilderApiError, match="role_arn") as error:
        retry.failed(client_error("ExpiredTokenException"))
    assert not isinstance(error.value, ImageBuilderRequestRejected) and not error.value.transient


def test_unknown_and_auth_codes_fail_at_the_first_answer_without_airflow_retries():
    for code in ["UnrecognizedClientException", "InvalidSignatureException", "BrandNewException"]:
        with pytest.raises(ImageBuilderRequestRejected, match=code):
            retry_for(RetryPolicy()).failed(client_error(code, 403))


def test_retries_are_bounded_by_attempts_and_by_elapsed_time():
    retry = retry_for(RetryPolicy(max_attempts=3))
    retry.failed(client_error("ServiceException", 500))
    retry.failed(client_error("ServiceException", 500))
    with pytest.raises(ImageBuilderApiError, match="after 3 attempts") as error:
        retry.failed(client_error("ServiceException", 500))
    assert error.value.transient
    clock = FakeClock()
    retry = retry_for(RetryPolicy(max_elapsed=10, base_delay=4), clock)
    retry.failed(client_error("ServiceException", 500))
    clock.now = 9
    with pytest.raises(ImageBuilderApiError, match="after 2 attempts"):
        retry.failed(client_error("ServiceException", 500))


def test_transport_errors_are_retried_and_other_exceptions_pass_through():
    retry = retry_for(RetryPolicy())
    assert retry.failed(botocore.exceptions.ReadTimeoutError(endpoint_url="http://x")).delay >= 0
    with pytest.raises(KeyError):
        retry.failed(KeyError("not an API error"))


def test_a_bounded_policy_fits_its_deadline():
    policy = RetryPolicy().bounded(20)
    assert policy.max_elapsed == 20 and policy.max_delay == 5


# ------------------------------------------------------------------------------------------ tokens
IDENTITY = {"dag_id": "d", "task_id": "t", "run_id": "r", "map_index": -1}
REQUEST = {"imageRecipeArn": IMAGE_RECIPE_ARN, "infrastructureConfigurationArn": INFRASTRUCTURE_ARN}


def test_namespaces_separate_tokens_and_no_namespace_keeps_the_old_ones():
    plain = derive_client_token(IDENTITY, REQUEST, 0)
    # Tokens without a namespace are what they were before namespaces existed: upgrades keep following builds.
    material = {"scheme": 1, "identity": IDENTITY, "request": REQUEST, "generation": 0}
    digest = hashlib.sha256(json.dumps(material, sort_keys=True, separators=(",", ":")).encode()).digest()
    assert plain == str(uuid.UUID(bytes=digest[:16], version=5))
    assert derive_client_token(IDENTITY, REQUEST, 0, namespace="") == plain
    staging = derive_client_token(IDENTITY, REQUEST, 0, namespace="staging")
    production = derive_client_token(IDENTITY, REQUEST, 0, namespace="production")
    assert len({plain, staging, production}) == 3
    assert derive_client_token(IDENTITY, REQUEST, 0, namespace="production") == production


def test_force_rebuild_tokens_stay_within_a_series_of_tries_and_change_with_a_clear():
    from airflow_imagebuilder.operators import ImageBuilderCreateImageOperator

    operator = ImageBuilderCreateImageOperator(
        task_id="t",
        force_rebuild=True,
        retries=2,
        **{"image_recipe_arn": IMAGE_RECIPE_ARN, "infrastructure_configuration_arn": INFRASTRUCTURE_ARN},
    )

    def token(try_number: int, max_tries: int) -> str:
        ti = SimpleNamespace(**IDENTITY, try_number=try_number, max_tries=max_tries)
        return operator._token({"ti": ti}, REQUEST, 0)

    first_series = {token(try_number, max_tries=2) for try_number in (1, 2, 3)}  # a try and its two retries
    cleared = token(4, max_tries=3 + 2)  # a clear after try 3: max_tries = try_number + retries
    assert len(first_series) == 1 and cleared not in first_series


def test_the_generation_walk_gives_up_after_max_generations(monkeypatch):
    from airflow_imagebuilder import operators

    operator = operators.ImageBuilderCreateImageOperator(
        task_id="t", image_recipe_arn=IMAGE_RECIPE_ARN, infrastructure_configuration_arn=INFRASTRUCTURE_ARN
    )
    tokens = []
    monkeypatch.setattr(operator, "_start_build", lambda request, token: tokens.append(token) or ARN)
    monkeypatch.setattr(operators.ImageBuildOperator, "hook", SimpleNamespace(find_image=lambda arn: image("FAILED")))
    ti = SimpleNamespace(**IDENTITY, try_number=1, max_tries=0)
    with pytest.raises(ImageBuilderError, match=f"{operators.MAX_GENERATIONS} builds"):
        operator._start_or_find_build({"ti": ti}, REQUEST)
    assert len(tokens) == len(set(tokens)) == operators.MAX_GENERATIONS


# ------------------------------------------------------------------------------------------ messages
def test_long_values_are_shortened_in_validation_messages():
    tags = {f"key{index}": "v" * 10 for index in range(51)}
    with pytest.raises(InvalidCreateImageRequest) as error:
        validate_request(
            {
                "clientToken": "t",
                "imageRecipeArn": IMAGE_RECIPE_ARN,
                "infrastructureConfigurationArn": "arn:" + "x" * 300,
                "tags": tags,
            }
        )
    message = str(error.value)
    assert message.startswith("Invalid CreateImage request: infrastructure_configuration_arn='arn:xxx")
    assert "...<" in message and message.endswith("; tags has 51 items; at most 50 are allowed") and len(message) < 400
    assert isinstance(error.value, ImageBuilderError)


def test_retry_policy_rejects_unknown_keys_by_name():
    with pytest.raises(ValueError, match=r"unknown keys \['max_tries'\]"):
        RetryPolicy.from_value({"max_tries": 3})


def test_retry_policy_takes_integral_floats_as_counts():
    # JSON and YAML configurations often carry 3.0 for 3; a fraction is still refused (see test_bad_input).
    policy = RetryPolicy.from_value({"max_attempts": 3.0, "in_use_attempts": 2.0, "base_delay": 0.5})
    assert (policy.max_attempts, policy.in_use_attempts, policy.base_delay) == (3, 2, 0.5)
    assert type(policy.max_attempts) is int and type(policy.in_use_attempts) is int


def test_a_whole_build_timeline_is_decided_without_a_clock():
    timeline = itertools.count()
    steps = [
        next_step(ARN, Poll(image=image(status)), elapsed=next(timeline), attempt=index + 1, max_attempts=10)
        for index, status in enumerate(["PENDING", "CREATING", "BUILDING", "TESTING", "AVAILABLE"])
    ]
    assert [step.outcome for step in steps] == [Outcome.WAITING] * 4 + [Outcome.SUCCEEDED]


def test_the_default_policy_rides_out_ten_minutes_of_outage_before_giving_up():
    clock = FakeClock()
    retry = CallRetry(RetryPolicy(), "CreateImage", "aws_default", clock)  # real jitter
    with pytest.raises(ImageBuilderApiError) as error:
        while True:
            clock.now += retry.failed(client_error("ServiceUnavailableException", 503)).delay
    assert 540 <= clock.now <= 600 and error.value.attempts < RetryPolicy().max_attempts  # time binds, not attempts


# ------------------------------------------------------------------------------------------ review fixes
@pytest.mark.parametrize(
    ("scan", "exception"),
    [
        ({"status": "TIMED_OUT", "reason": "Inspector did not answer"}, "ImageScanFailedError"),
        ({"status": "ABANDONED"}, "ImageScanFailedError"),
        ({"status": "FAILED"}, "ImageScanFailedError"),
        ({"status": "COLLECTING"}, "ImageScanIncompleteError"),
        (None, "ImageScanIncompleteError"),
    ],
)
def test_the_gate_judges_only_a_completed_scan(scan, exception):
    from airflow_imagebuilder import exceptions
    from airflow_imagebuilder.hooks import ImageBuilderHook

    image = {"imageScanningConfiguration": {"imageScanningEnabled": True}} | ({"scanState": scan} if scan else {})
    with pytest.raises(getattr(exceptions, exception), match="needs a completed scan"):
        ImageBuilderHook(aws_conn_id=None).gate_scan_findings(ARN, "HIGH", image)  # no call: the image says it
    assert issubclass(exceptions.ImageScanFailedError, exceptions.AirflowFailException)
    assert not issubclass(exceptions.ImageScanIncompleteError, exceptions.AirflowFailException)


@pytest.mark.parametrize("code", ["RequestTimeoutException", "PriorRequestNotComplete", "Throttling"])
def test_throttling_and_timeouts_of_any_endpoint_are_retried(code):
    assert classify(code) is ErrorAction.RETRY


def test_an_unknown_5xx_code_is_retried_and_its_message_does_not_say_otherwise():
    error = error_of("SomeInternalErrorException", 502)
    assert error.transient and "does not retry" not in str(error)
    assert "does not retry" in str(error_of("SomeClientErrorException", 400))


def test_a_token_mismatch_names_the_token(monkeypatch):
    from airflow_imagebuilder import operators

    operator = operators.ImageBuilderCreateImageOperator(
        task_id="t",
        image_recipe_arn=IMAGE_RECIPE_ARN,
        infrastructure_configuration_arn=INFRASTRUCTURE_ARN,
        client_token="my-token",
    )

    def mismatch(request, token):
        raise error_of("IdempotentParameterMismatchException", 400)

    monkeypatch.setattr(operator, "_start_build", mismatch)
    ti = SimpleNamespace(**IDENTITY, try_number=1, max_tries=0)
    with pytest.raises(ImageBuilderRequestRejected, match="Client token 'my-token': The client token was already"):
        operator._start_or_find_build({"ti": ti}, REQUEST)


def test_a_gate_needs_the_operator_to_wait():
    from airflow_imagebuilder.operators import ImageBuilderCreateImageOperator

    with pytest.raises(ValueError, match="max_finding_severity needs wait_for_completion=True"):
        ImageBuilderCreateImageOperator(
            task_id="t",
            image_recipe_arn=IMAGE_RECIPE_ARN,
            infrastructure_configuration_arn=INFRASTRUCTURE_ARN,
            image_scanning_configuration={"imageScanningEnabled": True},
            max_finding_severity="HIGH",
            wait_for_completion=False,
        )


@pytest.mark.parametrize(
    "operator_name", ["ImageBuilderCreateImageOperator", "ImageBuilderStartPipelineExecutionOperator"]
)
def test_the_shared_arguments_come_from_default_args_and_are_known_to_partial(operator_name):
    import pendulum
    from airflow.sdk import DAG

    from airflow_imagebuilder import operators

    operator_class = getattr(operators, operator_name)
    request = (
        {"image_recipe_arn": IMAGE_RECIPE_ARN, "infrastructure_configuration_arn": INFRASTRUCTURE_ARN}
        if operator_name == "ImageBuilderCreateImageOperator"
        else {"image_pipeline_arn": "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/p"}
    )
    shared = {"waiter_delay": 5, "waiter_max_attempts": 7, "cancel_on_kill": False, "api_retry": {"max_attempts": 2}}
    with DAG("shared_arguments", schedule=None, start_date=pendulum.datetime(2026, 1, 1), default_args=shared):
        operator = operator_class(task_id="t", **request)
        mapped = operator_class.partial(task_id="m", force_rebuild=True, **request, **shared).expand(tags=[{"k": "v"}])
    assert {name: getattr(operator, name) for name in shared} == shared
    assert (operator.force_rebuild, operator.client_token, operator._in_flight_arn) == (False, None, None)
    assert mapped.partial_kwargs["force_rebuild"] is True
    with pytest.raises(TypeError, match="waiter_dealy"):
        operator_class.partial(task_id="n", waiter_dealy=5)


def test_a_deferred_sensor_that_times_out_raises_what_poke_mode_raises():
    from airflow.providers.common.compat.sdk import AirflowSensorTimeout

    from airflow_imagebuilder.sensors import ImageBuilderImageSensor

    sensor = ImageBuilderImageSensor(task_id="s", image_build_version_arn=ARN, timeout=60, poke_interval=10)
    step = next_step(ARN, Poll(image=image("BUILDING")), elapsed=70, attempt=7, max_attempts=7, waiter_delay=10)
    with pytest.raises(AirflowSensorTimeout, match="did not become AVAILABLE within 7 polls"):
        sensor.execute_complete({}, step.to_event())


def test_a_wait_handed_the_last_logged_status_logs_only_the_transitions_after_it():
    log = mock.Mock()
    transitions = TransitionLog(ARN, log, last_status="PENDING")  # as the sensor's poke hands it to the trigger
    for status in ("PENDING", "PENDING", "BUILDING"):
        transitions.record(next_step(ARN, Poll(image=image(status)), elapsed=1), Poll(image=image(status)))
    assert [call.args[2] for call in log.info.call_args_list] == ["BUILDING"]
    assert transitions.last_status == "BUILDING"
