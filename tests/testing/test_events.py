"""The emulator's state change events, through a real moto server: EventBridge rule → SQS queue, as in AWS.

Each build's every status change arrives once, in order, in the service's format; a share can be dropped or
delayed (seeded); the controls work in-process, through the control API and from the command line.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_imagebuilder.testing import EmulatorControl, ImageBuilderEmulator, ManualClock
from airflow_imagebuilder.testing.__main__ import parse_event_delay
from airflow_imagebuilder.testing.events import STATE_CHANGE_DETAIL_TYPE, wire_events_to_queue
from airflow_imagebuilder.testing.processes import ServiceProcess, free_port, local_client, moto_process
from tests.conftest import IMAGE_RECIPE_ARN, INFRASTRUCTURE_ARN

REQUEST = {"imageRecipeArn": IMAGE_RECIPE_ARN, "infrastructureConfigurationArn": INFRASTRUCTURE_ARN}
WALK = ["PENDING", "CREATING", "BUILDING", "TESTING", "DISTRIBUTING", "INTEGRATING", "AVAILABLE"]


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with moto_process(log_dir=tmp_path_factory.mktemp("moto")) as process:
        yield process.endpoint_url


@pytest.fixture
def queue(moto: str) -> tuple[Any, str]:
    """An SQS client and the URL of a fresh queue receiving Image Builder's state change events."""
    sqs = local_client("sqs", moto)
    events = local_client("events", moto)
    name = f"imagebuilder-events-{uuid.uuid4().hex[:8]}"
    url = wire_events_to_queue(events, sqs, name)
    yield sqs, url
    events.remove_targets(Rule=f"imagebuilder-state-change-{name}", Ids=["imagebuilder-state-change-queue"])
    events.delete_rule(Name=f"imagebuilder-state-change-{name}")
    sqs.delete_queue(QueueUrl=url)


def receive(sqs: Any, url: str, count: int, timeout: float = 10.0, linger: int = 1) -> list[dict[str, Any]]:
    """``count`` events from the queue (deleting them), then whatever else arrives within ``linger`` seconds."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        wait = 0 if len(events) < count else linger
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait).get("Messages", [])
        for message in messages:
            events.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        if len(events) >= count and not messages:
            break
        if not messages:
            time.sleep(0.05)
    return events


def by_build(events: list[dict[str, Any]]) -> dict[str, list[tuple[str, str]]]:
    """(previous status, status) of each build's events, in the order they arrived."""
    changes: dict[str, list[tuple[str, str]]] = {}
    for event in events:
        detail = event["detail"]
        changes.setdefault(event["resources"][0], []).append(
            (detail["previous-state"]["status"], detail["state"]["status"])
        )
    return changes


def steps(*statuses: str) -> list[tuple[str, str]]:
    return list(itertools.pairwise(statuses))


def test_every_change_of_every_build_arrives_once_in_order_in_the_service_format(queue: tuple[Any, str], moto: str):
    sqs, url = queue
    with ImageBuilderEmulator(phase_seconds=10, clock=ManualClock(), events_endpoint_url=moto) as emulator:
        client = local_client("imagebuilder", emulator.endpoint_url)
        tested = client.create_image(**REQUEST, clientToken=str(uuid.uuid4()))["imageBuildVersionArn"]
        untested = client.create_image(
            **REQUEST, imageTestsConfiguration={"imageTestsEnabled": False}, clientToken=str(uuid.uuid4())
        )["imageBuildVersionArn"]
        created = dt.datetime.fromisoformat(client.get_image(imageBuildVersionArn=tested)["image"]["dateCreated"])
        emulator.advance(10)  # one phase
        emulator.advance(25)  # two and a half
        emulator.advance(100)  # past the end: every phase the jump went over is reported too
        assert emulator.flush_events()
        events = receive(sqs, url, count=11)

    assert by_build(events) == {tested: steps(*WALK), untested: steps(*[s for s in WALK if s != "TESTING"])}
    for event in events:
        assert set(event) >= {"version", "id", "detail-type", "source", "time", "region", "resources"}
        assert event["source"] == "aws.imagebuilder"
        assert event["detail-type"] == STATE_CHANGE_DETAIL_TYPE
        # EventBridge sets ``account`` to the sender's; moto's SQS target leaves it out of the message.
        assert event.get("account", "123456789012") == "123456789012"
        assert event["region"] == "us-east-1"
        assert event["version"] == "0"
        assert set(event["detail"]) == {"state", "previous-state"}
        assert "reason" not in event["detail"]["state"]
    # ``time`` is when the change happened on the build's clock (whole seconds, as EventBridge writes it).
    phases = {status: end for status, _start, end in emulator.backend.build(tested).phases}
    times = {
        (event["resources"][0], event["detail"]["state"]["status"]): dt.datetime.strptime(
            event["time"], "%Y-%m-%dT%H:%M:%SZ"
        ).replace(tzinfo=dt.timezone.utc)
        for event in events
    }
    assert abs((times[(tested, "CREATING")] - created).total_seconds() - phases["PENDING"]) <= 1
    assert abs((times[(tested, "AVAILABLE")] - created).total_seconds() - phases["INTEGRATING"]) <= 1
    journal = emulator.event_journal()
    assert [record.outcome for record in journal] == ["sent"] * 11
    assert len({record.event_id for record in journal}) == 11


def test_failed_and_cancelled_builds_report_their_reason(queue: tuple[Any, str], moto: str):
    sqs, url = queue
    with ImageBuilderEmulator(phase_seconds=10, clock=ManualClock(), events_endpoint_url=moto) as emulator:
        client = local_client("imagebuilder", emulator.endpoint_url)
        emulator.fail_next_builds("TESTING", reason="reboot test failed")
        failed = client.create_image(**REQUEST, clientToken=str(uuid.uuid4()))["imageBuildVersionArn"]
        cancelled = client.create_image(**REQUEST, clientToken=str(uuid.uuid4()))["imageBuildVersionArn"]
        emulator.advance(15)  # BUILDING
        client.cancel_image_creation(imageBuildVersionArn=cancelled, clientToken=str(uuid.uuid4()))
        emulator.advance(100)
        assert emulator.flush_events()
        events = receive(sqs, url, count=7)
        cancel_reason = client.get_image(imageBuildVersionArn=cancelled)["image"]["state"]["reason"]

    assert by_build(events) == {
        failed: steps("PENDING", "CREATING", "BUILDING", "TESTING", "FAILED"),
        cancelled: steps("PENDING", "CREATING", "BUILDING", "CANCELLED"),
    }
    finals = {event["resources"][0]: event["detail"]["state"] for event in events}
    assert finals[failed] == {"status": "FAILED", "reason": "reboot test failed"}
    assert finals[cancelled] == {"status": "CANCELLED", "reason": cancel_reason}


def test_changes_are_noticed_on_the_real_clock_without_any_get_image(queue: tuple[Any, str], moto: str):
    sqs, url = queue
    with ImageBuilderEmulator(phase_seconds=0.1, events_endpoint_url=moto) as emulator:
        client = local_client("imagebuilder", emulator.endpoint_url)
        arns = [client.create_image(**REQUEST, clientToken=str(uuid.uuid4()))["imageBuildVersionArn"] for _ in "ab"]
        events = receive(sqs, url, count=12)
        assert emulator.journal("GetImage") == []
    assert by_build(events) == {arn: steps(*WALK) for arn in arns}


def run_with_faults(moto: str, builds: int, **faults: Any) -> ImageBuilderEmulator:
    emulator = ImageBuilderEmulator(phase_seconds=1, clock=ManualClock(), events_endpoint_url=moto, seed=7, **faults)
    with emulator:
        client = local_client("imagebuilder", emulator.endpoint_url)
        for _ in range(builds):
            client.create_image(**REQUEST, clientToken=str(uuid.uuid4()))
        emulator.advance(10)
        assert emulator.flush_events()
    return emulator


def test_a_seeded_share_of_events_is_dropped_the_same_way_every_run(queue: tuple[Any, str], moto: str):
    sqs, url = queue
    emulator = run_with_faults(moto, builds=10, event_drop_share=0.5)
    journal = emulator.event_journal()
    dropped = [record.sequence for record in journal if record.outcome == "dropped"]
    assert len(journal) == 60
    assert 20 <= len(dropped) <= 40
    assert {record.outcome for record in journal} == {"sent", "dropped"}
    events = receive(sqs, url, count=60 - len(dropped), timeout=5)
    assert sorted(event["id"] for event in events) == sorted(
        record.event_id for record in journal if record.outcome == "sent"
    )
    again = run_with_faults(moto, builds=10, event_drop_share=0.5).event_journal()
    assert [record.sequence for record in again if record.outcome == "dropped"] == dropped
    receive(sqs, url, count=60 - len(dropped), timeout=5)


def test_delayed_events_arrive_after_their_delay(queue: tuple[Any, str], moto: str):
    sqs, url = queue
    with ImageBuilderEmulator(
        phase_seconds=1, clock=ManualClock(), events_endpoint_url=moto, event_delay=[0.8, 1.2], event_delay_share=0.5
    ) as emulator:
        client = local_client("imagebuilder", emulator.endpoint_url)
        arn = client.create_image(**REQUEST, clientToken=str(uuid.uuid4()))["imageBuildVersionArn"]
        started = time.monotonic()
        emulator.advance(10)
        journal = emulator.event_journal(arn)
        delayed = [record for record in journal if record.outcome == "delayed"]
        assert delayed and len(delayed) < 6
        assert all(0.8 <= record.delay <= 1.2 for record in delayed)
        on_time = receive(sqs, url, count=6 - len(delayed), timeout=0.6, linger=0)
        assert len(on_time) == 6 - len(delayed)
        assert emulator.flush_events()
        assert time.monotonic() - started >= 0.8
        late = receive(sqs, url, count=len(delayed))
    assert {event["detail"]["state"]["status"] for event in late} == {record.status for record in delayed}
    assert sorted(by_build(on_time + late)[arn], key=lambda change: WALK.index(change[1])) == steps(*WALK)
    assert all(record.outcome == "sent" for record in emulator.event_journal())


def test_control_api_and_command_line_set_the_same_controls(tmp_path: Path, queue: tuple[Any, str], moto: str):
    sqs, url = queue
    port = free_port()
    command = [sys.executable, "-m", "airflow_imagebuilder.testing", "--port", str(port), "--phase-seconds", "0.05"]
    command += ["--events-endpoint-url", moto, "--event-drop-share", "1", "--event-delay", "0.1-0.2", "--seed", "3"]
    with ServiceProcess("emulator-events", command, port, "/_emulator/health", tmp_path) as process:
        control = EmulatorControl(process.endpoint_url)
        client = local_client("imagebuilder", process.endpoint_url)
        assert control._call("GET", "event-faults") == {"drop_share": 1.0, "delay": [0.1, 0.2], "delay_share": 1.0}
        dropped = client.create_image(**REQUEST, clientToken=str(uuid.uuid4()))["imageBuildVersionArn"]
        while control.images()[dropped] != "AVAILABLE":
            time.sleep(0.05)
        assert control.flush_events()
        assert {record["outcome"] for record in control.event_journal(dropped)} == {"dropped"}

        control.set_event_faults(delay=0.1)
        sent = client.create_image(**REQUEST, clientToken=str(uuid.uuid4()))["imageBuildVersionArn"]
        events = receive(sqs, url, count=6)
        assert control.flush_events()
        journal = control.event_journal(sent)
        assert [record["outcome"] for record in journal] == ["sent"] * 6
        assert all(record["delay"] == 0.1 for record in journal)
    assert sorted(by_build(events)[sent], key=lambda change: WALK.index(change[1])) == steps(*WALK)


def test_without_an_events_endpoint_no_events_and_clear_errors():
    with pytest.raises(ValueError, match="events_endpoint_url"):
        ImageBuilderEmulator(event_drop_share=0.5)
    with ImageBuilderEmulator() as emulator:
        assert emulator.event_journal() == []
        with pytest.raises(RuntimeError, match="events_endpoint_url"):
            emulator.set_event_faults(drop_share=0.1)
        control = EmulatorControl(emulator.endpoint_url)
        assert control.event_journal() == []
        with pytest.raises(Exception, match="400"):
            control.set_event_faults(drop_share=0.1)


def test_event_delay_option_parses_seconds_and_ranges():
    assert parse_event_delay("2") == 2.0
    assert parse_event_delay("0.5-3") == [0.5, 3.0]
    with pytest.raises(Exception, match="--event-delay"):
        parse_event_delay("3-1")
