"""The deferrable wait: trigger serialization, events, and DAG runs deferred through Airflow."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib

import pytest

from airflow_imagebuilder._adapters.async_clients import SHARED_CLIENTS
from airflow_imagebuilder.hooks import ImageBuilderHook
from airflow_imagebuilder.triggers import ImageBuilderImageTrigger
from tests.conftest import IMAGE_RECIPE_ARN, INFRASTRUCTURE_ARN, task_states, xcom
from tests.test_token_rules import run

FAST_RETRY = {"base_delay": 0.001, "max_delay": 0.01, "max_attempts": 5, "max_elapsed": 30}


def make_trigger(arn: str, **overrides) -> ImageBuilderImageTrigger:
    return ImageBuilderImageTrigger(
        image_build_version_arn=arn,
        waiter_delay=overrides.pop("waiter_delay", 0.02),
        waiter_max_attempts=overrides.pop("waiter_max_attempts", 500),
        aws_conn_id="aws_default",
        region_name="us-east-1",
        api_retry=FAST_RETRY,
        **overrides,
    )


def start_build(emulator, token="t") -> str:
    import boto3

    client = boto3.client("imagebuilder", endpoint_url=emulator.endpoint_url, region_name="us-east-1")
    return client.create_image(
        imageRecipeArn=IMAGE_RECIPE_ARN, infrastructureConfigurationArn=INFRASTRUCTURE_ARN, clientToken=token
    )["imageBuildVersionArn"]


def events_of(trigger: ImageBuilderImageTrigger) -> list[dict]:
    async def collect():
        try:
            return [event.payload async for event in trigger.run()]
        finally:
            assert SHARED_CLIENTS.open_groups() == 0, "a shared client outlived its users"

    return asyncio.run(collect())


@pytest.mark.usefixtures("airflow_db")
def test_trigger_round_trips_through_airflow_trigger_serialization():
    from airflow.models.trigger import Trigger

    trigger = make_trigger(
        "arn:aws:imagebuilder:us-east-1:123456789012:image/golden-base/1.0.0/7",
        verify="/etc/ssl/ca.pem",
        botocore_config={"read_timeout": 30},
        cancel_on_kill=False,
    )
    row = Trigger.from_object(trigger)
    classpath, kwargs = row.classpath, row.kwargs
    module, _, name = classpath.rpartition(".")  # as the triggerer imports it
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == trigger.serialize()
    assert set(kwargs) == set(trigger.serialize()[1])


def test_trigger_reports_success_with_outputs(fast_emulator):
    arn = start_build(fast_emulator)
    [event] = events_of(make_trigger(arn))
    assert event["status"] == "success" and event["image_status"] == "AVAILABLE"
    assert list(event["outputs"]["ami_ids"]) == ["us-east-1"]


def test_trigger_retries_throttling_5xx_and_lost_responses_instead_of_failing(fast_emulator):
    arn = start_build(fast_emulator)
    fast_emulator.add_fault("GetImage", code="CallRateLimitExceededException", count=4)
    fast_emulator.add_fault("GetImage", code="ServiceUnavailableException", count=1)
    fast_emulator.add_fault("GetImage", code="ServiceException", count=1)
    fast_emulator.add_fault("GetImage", drop_response=True, count=1)
    [event] = events_of(make_trigger(arn))
    assert event["status"] == "success"
    outcomes = [entry.outcome for entry in fast_emulator.journal("GetImage")]
    assert outcomes.count("CallRateLimitExceededException") == 4 and "dropped" in outcomes


def test_trigger_failure_event_carries_status_and_reason(fast_emulator):
    fast_emulator.fail_next_builds(phase="BUILDING", reason="Component 'hardening' failed: exit 3")
    arn = start_build(fast_emulator)
    [event] = events_of(make_trigger(arn))
    assert event["status"] == "failure" and event["image_status"] == "FAILED"
    assert event["reason"] == "Component 'hardening' failed: exit 3"
    assert arn in event["message"] and "FAILED" in event["message"] and "hardening" in event["message"]


def test_trigger_rejected_call_is_an_error_event(fast_emulator):
    arn = start_build(fast_emulator)
    fast_emulator.add_fault("GetImage", code="ForbiddenException", message="not authorized")
    [event] = events_of(make_trigger(arn))
    assert event["status"] == "error" and event["error"]["code"] == "ForbiddenException"
    assert "not authorized" in event["message"]


def test_trigger_timeout_cancels_the_build(fast_emulator):
    fast_emulator.state.set_phase_seconds(30.0)
    arn = start_build(fast_emulator)
    [event] = events_of(make_trigger(arn, waiter_max_attempts=3))
    assert event["status"] == "timeout"
    assert fast_emulator.state.status(arn) == "CANCELLED"


def test_trigger_on_kill_cancels_the_build(fast_emulator):
    fast_emulator.state.set_phase_seconds(30.0)
    arn = start_build(fast_emulator)

    async def kill():
        try:
            await make_trigger(arn).on_kill()
        finally:
            assert SHARED_CLIENTS.open_groups() == 0, "a shared client outlived its users"

    asyncio.run(kill())
    assert fast_emulator.state.status(arn) == "CANCELLED"


def test_triggers_in_one_loop_share_one_client_closed_after_the_last(fast_emulator, monkeypatch):
    arns = [start_build(fast_emulator, token=f"t{index}") for index in range(20)]
    opened = []
    original = ImageBuilderHook.get_async_conn

    async def counting_get_async_conn(self):
        opened.append(self.aws_conn_id)
        return await original(self)

    monkeypatch.setattr(ImageBuilderHook, "get_async_conn", counting_get_async_conn)

    async def many():
        results = await asyncio.gather(*[_first(make_trigger(arn)) for arn in arns])
        return results, SHARED_CLIENTS.open_groups()

    results, open_after = asyncio.run(many())
    assert {event["status"] for event in results} == {"success"}
    assert opened == ["aws_default"] and open_after == 0


async def _first(trigger):
    async for event in trigger.run():
        return event.payload
    return None


def test_trigger_honours_connection_region_and_endpoint(fast_emulator, monkeypatch):
    """The async client reads endpoint and region from the connection (a bug class in other providers)."""
    from tests.conftest import aws_connection

    monkeypatch.setenv("AIRFLOW_CONN_EU", aws_connection(fast_emulator.endpoint_url, region_name="eu-west-1"))
    import boto3

    client = boto3.client("imagebuilder", endpoint_url=fast_emulator.endpoint_url, region_name="eu-west-1")
    arn = client.create_image(
        imageRecipeArn=IMAGE_RECIPE_ARN.replace("us-east-1", "eu-west-1"),
        infrastructureConfigurationArn=INFRASTRUCTURE_ARN.replace("us-east-1", "eu-west-1"),
        clientToken="eu",
    )["imageBuildVersionArn"]
    trigger = ImageBuilderImageTrigger(
        image_build_version_arn=arn, waiter_delay=0.02, waiter_max_attempts=500, aws_conn_id="eu"
    )
    [event] = events_of(trigger)
    assert event["status"] == "success" and event["outputs"]["ami_ids"].keys() == {"eu-west-1"}
    assert {entry.region for entry in fast_emulator.journal("GetImage")} == {"eu-west-1"}


def test_hook_async_and_sync_read_the_same_state(fast_emulator):
    arn = start_build(fast_emulator)
    hook = ImageBuilderHook(aws_conn_id="aws_default")

    async def read():
        try:
            return await hook.find_image_async(arn)
        finally:
            assert SHARED_CLIENTS.open_groups() == 0, "a shared client outlived its users"

    assert asyncio.run(read())["arn"] == hook.get_image(arn)["arn"]


# --------------------------------------------------------------------------------- through Airflow
@pytest.mark.usefixtures("airflow_db")
def test_deferrable_operator_with_throttling_while_deferred(fast_emulator, monkeypatch):
    fast_emulator.add_fault("GetImage", code="CallRateLimitExceededException", probability=0.3)
    fast_emulator.add_fault("GetImage", code="ServiceUnavailableException", count=1)
    dag_run = run(monkeypatch, IB_WAIT="1", IB_DEFERRABLE="1", logical_date=dt.datetime(2026, 4, 1, tzinfo=dt.UTC))
    assert task_states(dag_run) == {"create": "success", "wait": "success"}
    assert xcom(dag_run, "create", "ami_ids") == xcom(dag_run, "wait", "ami_ids")
    outcomes = [entry.outcome for entry in fast_emulator.journal("GetImage")]
    assert "CallRateLimitExceededException" in outcomes and "ServiceUnavailableException" in outcomes
    assert len(fast_emulator.state.image_arns()) == 1


@pytest.mark.usefixtures("airflow_db")
def test_deferrable_sensor_chained_on_create_output(fast_emulator, monkeypatch):
    fast_emulator.state.set_phase_seconds(0.3)
    fast_emulator.add_fault("GetImage", code="CallRateLimitExceededException", probability=0.3)
    dag_run = run(
        monkeypatch, IB_WAIT="0", IB_SENSOR_DEFERRABLE="1", logical_date=dt.datetime(2026, 4, 2, tzinfo=dt.UTC)
    )
    assert task_states(dag_run) == {"create": "success", "wait": "success"}
    [arn] = fast_emulator.state.image_arns()
    assert xcom(dag_run, "wait") == arn
    assert xcom(dag_run, "wait", "ami_ids")["us-east-1"].startswith("ami-")


def test_trigger_killed_by_a_user_cancels_and_fires_nothing(fast_emulator):
    fast_emulator.state.set_phase_seconds(30.0)
    arn = start_build(fast_emulator)
    trigger = make_trigger(arn)

    async def kill_while_waiting():
        try:
            events = trigger.run()
            reader = asyncio.ensure_future(events.__anext__())
            while not fast_emulator.journal("GetImage"):
                await asyncio.sleep(0.01)
            await trigger.on_kill()  # what the triggerer calls when the deferred task is cleared
            with pytest.raises(StopAsyncIteration):
                await reader
        finally:
            assert SHARED_CLIENTS.open_groups() == 0, "a shared client outlived its users"

    asyncio.run(kill_while_waiting())
    assert fast_emulator.state.status(arn) == "CANCELLED"
