"""No secret leaks anywhere Airflow keeps things; waits outlive temporary credentials."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from pathlib import Path

import pytest
import time_machine

from airflow_imagebuilder._adapters.async_clients import SHARED_CLIENTS
from airflow_imagebuilder.hooks import ImageBuilderHook
from airflow_imagebuilder.testing.processes import free_port
from airflow_imagebuilder.triggers import ImageBuilderImageTrigger
from tests.conftest import IMAGE_RECIPE_ARN, INFRASTRUCTURE_ARN, load_dag
from tests.test_token_rules import run

ACCESS_KEY = "AKIAZ7QEXAMPLE4LEAK1"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzSecretLeak1"
SESSION_TOKEN = "FwoGZXIvYXdzEJr//////////wEaDSessionTokenLeakCheck1234567890abcdef"


@pytest.mark.usefixtures("airflow_db")
def test_no_secret_in_logs_xcom_rendered_fields_or_triggers(fast_emulator, monkeypatch, capfd):
    connection = {
        "conn_type": "aws",
        "login": ACCESS_KEY,
        "password": SECRET_KEY,
        "extra": {
            "region_name": "us-east-1",
            "endpoint_url": fast_emulator.endpoint_url,
            "aws_session_token": SESSION_TOKEN,
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
    fast_emulator.state.set_phase_seconds(0.3)
    dag_run = run(monkeypatch, IB_WAIT="1", IB_DEFERRABLE="1", logical_date=dt.datetime(2026, 8, 1, tzinfo=dt.UTC))
    assert {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()} == {
        "create": "success",
        "wait": "success",
    }
    # the emulator really received these credentials (so they were in use) ...
    assert {entry.access_key_id for entry in fast_emulator.journal()} == {ACCESS_KEY}
    # ... yet none of them is in the task logs, nor anywhere in the metadata DB (XCom, rendered fields, triggers)
    output = capfd.readouterr()
    database = (Path(os.environ["AIRFLOW_HOME"]) / "airflow.db").read_bytes()
    logs = b"".join(path.read_bytes() for path in Path(os.environ["AIRFLOW_HOME"]).rglob("*.log"))
    # (Airflow 3.0's dag.test() prints, at debug level, the task's request that the supervisor mask the secret)
    printed = "\n".join(line for line in (output.out + output.err).splitlines() if "MaskSecret(value=" not in line)
    for secret in (ACCESS_KEY, SECRET_KEY, SESSION_TOKEN):
        assert secret not in printed
        assert secret.encode() not in database and secret.encode() not in logs
    # a trigger serializes identifiers only
    dag = load_dag("create_and_wait.py", "ib_create_and_wait")
    trigger = ImageBuilderImageTrigger(image_build_version_arn="arn:x", aws_conn_id="aws_default")
    assert set(trigger.serialize()[1]) == {
        "image_build_version_arn",
        "waiter_delay",
        "waiter_max_attempts",
        "aws_conn_id",
        "region_name",
        "verify",
        "botocore_config",
        "cancel_on_kill",
        "api_retry",
        "not_found_grace",
        "completion_queue_url",
        "safety_poll_interval",
        "last_status",
    }
    assert dag.get_task("create").aws_conn_id == "aws_default"


@pytest.fixture
def assumed_role_connection(fast_emulator, monkeypatch, tmp_path):
    """aws_default assumes a role through moto's STS for 15 minutes at a time; Image Builder is the emulator.

    moto runs as a threaded server in this process, so the travelling clock is its clock too: the credentials it
    issues after the jump are valid from the new "now".
    """
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    moto.start()
    moto.endpoint_url = f"http://127.0.0.1:{moto._port}"
    try:
        extra = {
            "region_name": "us-east-1",
            "endpoint_url": moto.endpoint_url,
            "service_config": {
                "imagebuilder": {"endpoint_url": fast_emulator.endpoint_url},
                "sts": {"endpoint_url": moto.endpoint_url},  # assume-role ignores the global endpoint_url
            },
            "role_arn": "arn:aws:iam::123456789012:role/imagebuilder-airflow",
            "assume_role_kwargs": {"DurationSeconds": 900},
        }
        monkeypatch.setenv(
            "AIRFLOW_CONN_AWS_DEFAULT",
            json.dumps({"conn_type": "aws", "login": "base-key", "password": "base-secret", "extra": extra}),
        )
        yield fast_emulator
    finally:
        moto.stop()


def start_build(emulator) -> str:
    import boto3

    client = boto3.client("imagebuilder", endpoint_url=emulator.endpoint_url, region_name="us-east-1")
    return client.create_image(
        imageRecipeArn=IMAGE_RECIPE_ARN, infrastructureConfigurationArn=INFRASTRUCTURE_ARN, clientToken="long"
    )["imageBuildVersionArn"]


def test_sync_wait_outlives_assumed_role_credentials(assumed_role_connection):
    emulator = assumed_role_connection
    emulator.state.set_phase_seconds(0.4)
    arn = start_build(emulator)
    hook = ImageBuilderHook(aws_conn_id="aws_default")
    with time_machine.travel(dt.datetime.now(dt.timezone.utc), tick=True) as traveller:
        first = hook.get_image(arn)
        traveller.shift(dt.timedelta(hours=2))  # the assumed role's 15-minute credentials are long gone
        image = hook.wait_for_image(arn, waiter_delay=0.2, waiter_max_attempts=100)
    assert first["arn"] == image["arn"] and image["state"]["status"] == "AVAILABLE"
    keys = [entry.access_key_id for entry in emulator.journal("GetImage")]
    assert len(set(keys)) >= 2 and all(key.startswith("ASIA") for key in keys)  # refreshed via STS
    assert all(entry.outcome == "ok" for entry in emulator.journal("GetImage"))


def test_trigger_outlives_assumed_role_credentials(assumed_role_connection):
    emulator = assumed_role_connection
    emulator.state.set_phase_seconds(0.4)
    arn = start_build(emulator)
    trigger = ImageBuilderImageTrigger(image_build_version_arn=arn, waiter_delay=0.2, waiter_max_attempts=100)

    async def wait_across_expiry():
        try:
            with time_machine.travel(dt.datetime.now(dt.timezone.utc), tick=True) as traveller:
                events = trigger.run()
                reader = asyncio.ensure_future(events.__anext__())
                while not emulator.journal("GetImage"):
                    await asyncio.sleep(0.05)
                traveller.shift(dt.timedelta(hours=2))
                return (await reader).payload
        finally:
            assert SHARED_CLIENTS.open_groups() == 0, "a shared client outlived its users"

    event = asyncio.run(wait_across_expiry())
    assert event["status"] == "success"
    keys = [entry.access_key_id for entry in emulator.journal("GetImage")]
    assert len(set(keys)) >= 2 and all(key.startswith("ASIA") for key in keys)
