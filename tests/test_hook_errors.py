"""Each row of the error table, through the hook against the emulator's fault injection (sync path)."""

from __future__ import annotations

import asyncio
import json

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_imagebuilder._decisions.retry import RetryPolicy
from airflow_imagebuilder.exceptions import ImageBuilderApiError, ImageBuilderRequestRejected
from airflow_imagebuilder.hooks import ImageBuilderHook
from airflow_imagebuilder.models import validate_request
from tests.conftest import IMAGE_RECIPE_ARN, INFRASTRUCTURE_ARN, aws_connection

FAST = RetryPolicy(base_delay=0.001, max_delay=0.01, max_attempts=6, max_elapsed=30, in_use_attempts=3)
REQUEST = validate_request(
    {"clientToken": "tok-1", "imageRecipeArn": IMAGE_RECIPE_ARN, "infrastructureConfigurationArn": INFRASTRUCTURE_ARN}
)


@pytest.fixture
def hook(aws_conn):
    return ImageBuilderHook(aws_conn_id="aws_default", api_retry=FAST)


def outcomes(emulator, operation="CreateImage"):
    return [(entry.outcome, entry.client_token) for entry in emulator.journal(operation)]


@pytest.mark.parametrize("code", ["CallRateLimitExceededException", "ServiceUnavailableException", "ServiceException"])
def test_throttling_and_5xx_are_retried_with_the_same_token(hook, aws_conn, code):
    aws_conn.add_fault("CreateImage", code=code, count=3)
    arn = hook.create_image(REQUEST)["imageBuildVersionArn"]
    assert outcomes(aws_conn) == [(code, "tok-1")] * 3 + [("ok", "tok-1")]
    assert aws_conn.state.image_arns() == [arn]


def test_retries_are_bounded_and_say_how_many_attempts(hook, aws_conn):
    aws_conn.add_fault("CreateImage", code="CallRateLimitExceededException", message="Rate exceeded")
    with pytest.raises(ImageBuilderApiError, match=r"CallRateLimitExceededException: Rate exceeded .*after 6 attempts"):
        hook.create_image(REQUEST)
    assert len(aws_conn.journal("CreateImage")) == 6


def test_lost_response_and_read_timeout_are_retried_with_the_same_token(aws_conn, monkeypatch):
    from tests.conftest import aws_connection

    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        aws_connection(
            aws_conn.endpoint_url, config_kwargs={"read_timeout": 0.3, "retries": {"total_max_attempts": 1}}
        ),
    )
    hook = ImageBuilderHook(aws_conn_id="aws_default", api_retry=FAST)
    aws_conn.add_fault("CreateImage", drop_response=True, count=1)
    aws_conn.add_fault("CreateImage", latency=0.6, count=1)
    arn = hook.create_image(REQUEST)["imageBuildVersionArn"]
    assert outcomes(aws_conn) == [("dropped", "tok-1"), ("ok", "tok-1"), ("ok", "tok-1")]
    assert aws_conn.state.image_arns() == [arn]


def test_resource_in_use_gets_a_few_retries_then_a_retryable_failure(hook, aws_conn):
    aws_conn.add_fault("CreateImage", code="ResourceInUseException", message="Recipe is being updated")
    with pytest.raises(ImageBuilderApiError) as caught:
        hook.create_image(REQUEST)
    assert not isinstance(caught.value, AirflowFailException)
    assert "after 3 attempts" in str(caught.value) and "Recipe is being updated" in str(caught.value)
    assert len(aws_conn.journal("CreateImage")) == 3


def test_quota_exceeded_is_a_retryable_task_failure_naming_the_quota(hook, aws_conn):
    aws_conn.add_fault(
        "CreateImage", code="ServiceQuotaExceededException", message="Concurrent image builds quota of 100 reached"
    )
    with pytest.raises(ImageBuilderApiError) as caught:
        hook.create_image(REQUEST)
    assert not isinstance(caught.value, AirflowFailException)
    assert "Concurrent image builds quota of 100 reached" in str(caught.value)
    assert "quota" in str(caught.value).lower() and "after 1 attempt." in str(caught.value)
    assert len(aws_conn.journal("CreateImage")) == 1


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        ("IdempotentParameterMismatchException", "client token"),
        ("ClientException", ""),
        ("InvalidRequestException", ""),
        ("ForbiddenException", "execution_role"),
    ],
)
def test_rejections_fail_without_retries_with_message_and_request_id(hook, aws_conn, code, hint):
    aws_conn.add_fault("CreateImage", code=code, message=f"service says no ({code})")
    with pytest.raises(ImageBuilderRequestRejected) as caught:
        hook.create_image(REQUEST)
    assert isinstance(caught.value, AirflowFailException)
    [entry] = aws_conn.journal("CreateImage")
    message = str(caught.value)
    assert code in message and f"service says no ({code})" in message and entry.request_id in message
    assert hint in message


def test_real_idempotent_mismatch_names_the_token(hook, aws_conn):
    hook.create_image(REQUEST)
    changed = validate_request({**REQUEST.to_api(), "tags": {"different": "request"}})
    with pytest.raises(ImageBuilderRequestRejected, match=r"tok-1.*different parameters.*Give a new client_token"):
        hook.create_image(changed)


def test_cancel_of_a_finished_build_is_reported_not_raised(hook, aws_conn):
    arn = hook.create_image(REQUEST)["imageBuildVersionArn"]
    assert hook.cancel_image_creation(arn) is True
    assert aws_conn.state.status(arn) == "CANCELLED"
    assert hook.cancel_image_creation(arn) is False


def test_not_found_right_after_create_is_eventual_consistency(monkeypatch):
    from airflow_imagebuilder.testing import ImageBuilderEmulator
    from tests.conftest import aws_connection

    with ImageBuilderEmulator(phase_seconds=0.05, visibility_delay=0.3) as emulator:
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection(emulator.endpoint_url))
        hook = ImageBuilderHook(aws_conn_id="aws_default", api_retry=FAST)
        arn = hook.create_image(REQUEST)["imageBuildVersionArn"]
        image = hook.wait_for_image(arn, waiter_delay=0.05, waiter_max_attempts=100, not_found_grace=5)
        assert image["state"]["status"] == "AVAILABLE"
        assert "ResourceNotFoundException" in [entry.outcome for entry in emulator.journal("GetImage")]
        missing = arn.replace("/1", "/99")
        with pytest.raises(ImageBuilderApiError, match=r"/99 was still not found after more than \d+s of waiting"):
            hook.wait_for_image(missing, waiter_delay=0.05, waiter_max_attempts=100, not_found_grace=0.2)


def test_sync_wait_outlasts_errors_beyond_the_hook_retries(hook, aws_conn):
    """Like the trigger: a poll whose retries run out does not end the wait; the next poll tries again."""
    aws_conn.state.set_phase_seconds(0.0)
    arn = hook.create_image(REQUEST)["imageBuildVersionArn"]
    aws_conn.add_fault("GetImage", code="ServiceUnavailableException", count=8)  # more than 6 attempts per poll
    image = hook.wait_for_image(arn, waiter_delay=0.01, waiter_max_attempts=10)
    assert image["state"]["status"] == "AVAILABLE"
    assert [entry.outcome for entry in aws_conn.journal("GetImage")].count("ServiceUnavailableException") == 8


@pytest.mark.parametrize("path", ["sync", "async"])
def test_expired_credentials_are_renewed_from_the_connection_by_a_new_hook(hook, aws_conn, monkeypatch, path):
    """A hook reads its connection once; after ExpiredTokenException it retries with the keys the connection has now."""
    arn = hook.create_image(REQUEST)["imageBuildVersionArn"]

    def rotate() -> None:
        connection = json.loads(aws_connection(aws_conn.endpoint_url))
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({**connection, "login": "AKIANEWSESSIONKEY"}))
        aws_conn.deny_access_key("testing", code="ExpiredTokenException")

    if path == "sync":
        hook.get_image(arn)
        rotate()
        image = hook.get_image(arn)
    else:

        async def across_rotation() -> dict:
            async with hook.client_lease():
                await hook.get_image_async(arn)
                rotate()
                return await hook.get_image_async(arn)

        image = asyncio.run(across_rotation())
    assert image["arn"] == arn
    assert [(entry.access_key_id, entry.outcome) for entry in aws_conn.journal("GetImage")] == [
        ("testing", "ok"),
        ("testing", "ExpiredTokenException"),
        ("AKIANEWSESSIONKEY", "ok"),
    ]


def test_botocore_retries_stay_off_unless_the_config_or_the_connection_sets_them(aws_conn, monkeypatch):
    """The hook retries by the error table; a user who wants botocore's retries sets them in the public config."""
    assert ImageBuilderHook().conn.meta.config.retries == {"mode": "standard", "total_max_attempts": 1}
    own = {"mode": "adaptive", "max_attempts": 5}
    assert ImageBuilderHook(config={"retries": own}).conn.meta.config.retries == own
    connection = aws_connection(aws_conn.endpoint_url, config_kwargs={"retries": own})
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", connection)
    assert ImageBuilderHook().conn.meta.config.retries == own
