"""One wait in every mode: sync, poke, reschedule and deferrable end for the same causes with the same errors.

Through Airflow running the DAGs (``dag.test``) and the hook and trigger, against the emulator over HTTP.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re

import boto3
import pytest

from airflow_imagebuilder.exceptions import (
    ImageBuilderApiError,
    ImageBuilderRequestRejected,
    ImageBuildFailedError,
    ImageBuildTimeoutError,
    ImageNotFoundError,
)
from airflow_imagebuilder.hooks import ImageBuilderHook
from airflow_imagebuilder.triggers import ImageBuilderImageTrigger, resolve_event
from tests.conftest import IMAGE_RECIPE_ARN, INFRASTRUCTURE_ARN, load_dag, task_states
from tests.test_token_rules import run

pytestmark = pytest.mark.usefixtures("airflow_db")

FAST_RETRY = {"base_delay": 0.001, "max_delay": 0.01, "max_attempts": 4, "max_elapsed": 30}
SENSOR_MODES = ["poke", "reschedule", "deferrable"]
MISSING_ARN = "arn:aws:imagebuilder:us-east-1:123456789012:image/never-built/1.0.0/1"


def start_build(emulator, token: str = "t") -> str:
    client = boto3.client("imagebuilder", endpoint_url=emulator.endpoint_url, region_name="us-east-1")
    return client.create_image(
        imageRecipeArn=IMAGE_RECIPE_ARN, infrastructureConfigurationArn=INFRASTRUCTURE_ARN, clientToken=token
    )["imageBuildVersionArn"]


def run_sensor(monkeypatch, mode: str, arn: str, grace: float = 120):
    monkeypatch.setenv("IB_MODE", mode)
    monkeypatch.setenv("IB_ARN", arn)
    monkeypatch.setenv("IB_GRACE", str(grace))
    logical_date = dt.datetime(2026, 4, 1, tzinfo=dt.timezone.utc)
    return load_dag("wait_modes.py", "ib_wait_modes").test(logical_date=logical_date, run_after=logical_date)


def gets(emulator) -> list:
    return emulator.journal("GetImage")


def test_a_rescheduled_sensor_measures_its_wait_from_its_first_try(fast_emulator, monkeypatch):
    """The second try reads the first try's start, as text on Airflow 3.0, as a datetime after it.

    The first poll finds no image (within the not-found grace), so the sensor is rescheduled once; the second
    finds it AVAILABLE.  (On Airflow 3.0, dag.test() fails any sensor's second try that does not end its wait: its
    own BaseSensorOperator subtracts that same text from a datetime.)"""
    arn = start_build(fast_emulator)
    ImageBuilderHook(aws_conn_id="aws_default").wait_for_image(arn, waiter_delay=0.05, waiter_max_attempts=100)
    fast_emulator.add_fault("GetImage", code="ResourceNotFoundException", status=404, count=1)
    polls_before = len(gets(fast_emulator))
    dag_run = run_sensor(monkeypatch, "reschedule", arn)
    assert task_states(dag_run) == {"wait": "success"}
    assert len(gets(fast_emulator)) - polls_before == 2  # one poll in each of the sensor's two tries


@pytest.mark.parametrize("code", ["UnrecognizedClientException", "AccessDeniedException"])
@pytest.mark.parametrize("mode", SENSOR_MODES)
def test_sensor_fails_at_the_first_403_in_every_mode(fast_emulator, monkeypatch, capfd, mode, code):
    fast_emulator.state.set_phase_seconds(30)
    arn = start_build(fast_emulator)
    fast_emulator.add_fault("GetImage", code=code, status=403, message="The security token is not valid")
    dag_run = run_sensor(monkeypatch, mode, arn)
    assert task_states(dag_run) == {"wait": "failed"}
    assert len(gets(fast_emulator)) == 1  # one poll, no retries, no further polls
    output = capfd.readouterr().out
    assert f"GetImage failed with {code}" in output and "connection 'aws_default'" in output
    assert not fast_emulator.journal("CancelImageCreation")


@pytest.mark.parametrize("deferrable", ["0", "1"])
def test_operator_fails_at_the_first_403_during_its_wait(fast_emulator, monkeypatch, capfd, deferrable):
    fast_emulator.state.set_phase_seconds(30)
    fast_emulator.add_fault("GetImage", latency=0.001, count=1)  # the operator's read after CreateImage passes
    fast_emulator.add_fault("GetImage", code="AccessDeniedException", status=403, message="denied")
    dag_run = run(monkeypatch, IB_WAIT="1", IB_DEFERRABLE=deferrable)
    assert task_states(dag_run)["create"] == "failed"
    assert [entry.outcome for entry in gets(fast_emulator)] == ["ok", "AccessDeniedException"]
    assert "GetImage failed with AccessDeniedException: denied" in capfd.readouterr().out
    assert not fast_emulator.journal("CancelImageCreation")


@pytest.mark.parametrize("mode", SENSOR_MODES)
def test_sensor_fails_on_an_arn_that_does_not_exist_once_the_grace_ends(fast_emulator, monkeypatch, capfd, mode):
    dag_run = run_sensor(monkeypatch, mode, MISSING_ARN, grace=1)
    assert task_states(dag_run) == {"wait": "failed"}
    assert "was still not found after more than 1s of waiting" in capfd.readouterr().out
    assert 1 <= len(gets(fast_emulator)) <= 30  # the first poll alone may outlast a 1 s grace on a busy machine


def test_sync_wait_fails_on_an_arn_that_does_not_exist_once_the_grace_ends(fast_emulator):
    hook = ImageBuilderHook(aws_conn_id="aws_default", api_retry=FAST_RETRY)
    with pytest.raises(ImageNotFoundError, match="still not found after more than 1s"):
        hook.wait_for_image(MISSING_ARN, waiter_delay=0.1, waiter_max_attempts=1000, not_found_grace=1)


def test_transient_errors_then_resource_in_use_on_create_image_need_no_airflow_retry(fast_emulator, monkeypatch):
    for code in ["CallRateLimitExceededException"] * 3 + ["ServiceException", "ServiceUnavailableException"]:
        fast_emulator.add_fault("CreateImage", code=code, count=1)
    fast_emulator.add_fault("CreateImage", code="ResourceInUseException", count=1)
    dag_run = run(monkeypatch, IB_WAIT="1")
    assert task_states(dag_run) == {"create": "success", "wait": "success"}
    [ti] = [ti for ti in dag_run.get_task_instances() if ti.task_id == "create"]
    assert ti.try_number == 1
    outcomes = [entry.outcome for entry in fast_emulator.journal("CreateImage")]
    assert outcomes == ["CallRateLimitExceededException"] * 3 + [
        "ServiceException",
        "ServiceUnavailableException",
        "ResourceInUseException",
        "ok",
    ]
    assert len(fast_emulator.images()) == 1


# ------------------------------------------------------------------------------ timeouts and cancel
def sync_wait(arn: str, **kwargs):
    hook = ImageBuilderHook(aws_conn_id="aws_default", api_retry=FAST_RETRY)
    return hook.wait_for_image(arn, waiter_delay=0.05, waiter_max_attempts=3, **kwargs)


def deferred_wait(arn: str, **kwargs):
    trigger = ImageBuilderImageTrigger(
        image_build_version_arn=arn,
        waiter_delay=0.05,
        waiter_max_attempts=3,
        aws_conn_id="aws_default",
        region_name="us-east-1",
        api_retry=FAST_RETRY,
        **kwargs,
    )

    async def first_event():
        async for event in trigger.run():
            return event.payload
        return None

    # As execute_complete does in the worker: the hook adds a failed build's details.
    return resolve_event(asyncio.run(first_event()), ImageBuilderHook(aws_conn_id="aws_default", api_retry=FAST_RETRY))


@pytest.mark.parametrize("wait", [sync_wait, deferred_wait], ids=["sync", "deferred"])
def test_cancel_on_kill_false_never_cancels_a_timed_out_build(fast_emulator, wait):
    fast_emulator.state.set_phase_seconds(60)
    arn = start_build(fast_emulator)
    kwargs = {"cancel_on_timeout": False} if wait is sync_wait else {"cancel_on_kill": False}
    with pytest.raises(ImageBuildTimeoutError, match=r"left running \(cancel_on_kill=False\)"):
        wait(arn, **kwargs)
    assert not fast_emulator.journal("CancelImageCreation")
    assert fast_emulator.images()[arn] != "CANCELLED"


@pytest.mark.parametrize("wait", [sync_wait, deferred_wait], ids=["sync", "deferred"])
def test_a_failed_cancel_never_hides_the_timeout(fast_emulator, wait):
    fast_emulator.state.set_phase_seconds(60)
    arn = start_build(fast_emulator)
    fast_emulator.add_fault("CancelImageCreation", code="ServiceUnavailableException")
    with pytest.raises(ImageBuildTimeoutError, match="cancelling the build failed: CancelImageCreation failed"):
        wait(arn)
    assert {entry.outcome for entry in fast_emulator.journal("CancelImageCreation")} == {"ServiceUnavailableException"}


def test_operator_cancel_on_kill_false_leaves_a_timed_out_build_running(fast_emulator):
    from airflow_imagebuilder.operators import ImageBuilderCreateImageOperator

    fast_emulator.state.set_phase_seconds(60)
    operator = ImageBuilderCreateImageOperator(
        task_id="t",
        image_recipe_arn=IMAGE_RECIPE_ARN,
        infrastructure_configuration_arn=INFRASTRUCTURE_ARN,
        client_token="fixed-token",
        waiter_delay=0.05,
        waiter_max_attempts=2,
        cancel_on_kill=False,
        api_retry=FAST_RETRY,
    )

    class TI:
        dag_id, task_id, run_id, map_index, max_tries = "d", "t", "r", -1, 0

        def xcom_push(self, key, value):
            pass

    from unittest import mock

    with mock.patch("airflow_imagebuilder.links.ImageBuilderImageLink.persist"), pytest.raises(ImageBuildTimeoutError):
        operator.execute({"ti": TI()})
    assert not fast_emulator.journal("CancelImageCreation")


# ------------------------------------------------------------------------------ same cause, same exception
def failed_build(emulator, token: str) -> str:
    emulator.fail_next_builds("BUILDING", reason="Workflow Execution ID: wf-1 failed with reason: step Y")
    return start_build(emulator, token=token)


def running_build(emulator, token: str) -> str:
    emulator.state.set_phase_seconds(60)
    return start_build(emulator, token=token)


def forbidden(emulator, token: str) -> str:
    arn = start_build(emulator, token=token)
    emulator.add_fault("GetImage", code="ForbiddenException", message="not authorized")
    return arn


def quota(emulator, token: str) -> str:
    arn = start_build(emulator, token=token)
    emulator.add_fault("GetImage", code="ServiceQuotaExceededException", message="quota")
    return arn


CAUSES = {
    "failed": (failed_build, ImageBuildFailedError, {}),
    "timed out": (running_build, ImageBuildTimeoutError, {}),
    "not found": (lambda emulator, token: MISSING_ARN, ImageNotFoundError, {"not_found_grace": 0.1}),
    "rejected": (forbidden, ImageBuilderRequestRejected, {}),
    "api error": (quota, ImageBuilderApiError, {}),
}


def without_request_ids(message: str) -> str:
    """The message with what differs between two builds of one cause (request and execution ids) left out."""
    message = re.sub(r"request id [\w-]+", "request id <id>", message)
    message = re.sub(r"log stream 1\.0\.0/\d+$", "log stream <stream>", message)
    return re.sub(r"\b(wf|step)-[0-9a-f-]{36}", r"\1-<id>", message)


@pytest.mark.parametrize("cause", sorted(CAUSES))
def test_the_same_cause_raises_the_same_exception_in_sync_and_deferred_mode(fast_emulator, cause):
    make, exception_class, kwargs = CAUSES[cause]
    errors = []
    for wait in (sync_wait, deferred_wait):
        fast_emulator.clear_faults()
        fast_emulator.state.set_phase_seconds(0.05)
        arn = make(fast_emulator, wait.__name__)
        with pytest.raises(exception_class) as error:
            wait(arn, **kwargs)
        errors.append(without_request_ids(str(error.value)).replace(arn, "<arn>"))
        assert type(error.value) is exception_class
    assert errors[0] == errors[1]
