"""Event-driven waiting: emulator -> moto EventBridge -> moto SQS -> the shared queue consumer of the triggerer."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from airflow_imagebuilder.testing import ImageBuilderEmulator
from airflow_imagebuilder.testing.events import wire_events_to_queue
from airflow_imagebuilder.testing.examples import seed_example_resources
from airflow_imagebuilder.testing.processes import aws_connection_uri, moto_process
from airflow_imagebuilder.triggers import ImageBuilderImageEventTrigger, ImageBuilderImageTrigger, resolve_event
from tests.conftest import IMAGE_RECIPE_ARN, INFRASTRUCTURE_ARN, TESTS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with moto_process(log_dir=tmp_path_factory.mktemp("moto")) as process:
        yield process


def client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="x"
    )


@pytest.fixture
def wired(moto: Any, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[tuple[Any, str]]:
    """An emulator sending its events to moto's EventBridge, a rule delivering them to a fresh queue."""
    options = getattr(request, "param", {})
    queue_name = "q-" + re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)[-60:]
    queue_url = wire_events_to_queue(client("events", moto.endpoint_url), client("sqs", moto.endpoint_url), queue_name)
    with ImageBuilderEmulator(phase_seconds=0.3, events_endpoint_url=moto.endpoint_url, **options) as emulator:
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection_uri(emulator.endpoint_url, moto.endpoint_url))
        yield emulator, queue_url


def start(emulator: Any, token: str, **request: Any) -> str:
    return client("imagebuilder", emulator.endpoint_url).create_image(
        imageRecipeArn=IMAGE_RECIPE_ARN, infrastructureConfigurationArn=INFRASTRUCTURE_ARN, clientToken=token, **request
    )["imageBuildVersionArn"]


def trigger(arn: str, queue_url: str | None, **options: Any) -> ImageBuilderImageTrigger:
    return ImageBuilderImageTrigger(
        image_build_version_arn=arn,
        waiter_delay=options.pop("waiter_delay", 0.5),
        waiter_max_attempts=600,
        aws_conn_id="aws_default",
        completion_queue_url=queue_url,
        **options,
    )


def events_of(*triggers: ImageBuilderImageTrigger) -> list[dict]:
    async def first(one: ImageBuilderImageTrigger) -> dict:
        async for event in one.run():
            return event.payload
        raise AssertionError("the trigger fired nothing")

    async def all_of() -> list[dict]:
        return list(await asyncio.gather(*(first(one) for one in triggers)))

    return asyncio.run(all_of())


def gets_of(emulator: Any, arn: str) -> int:
    return len([entry for entry in emulator.journal("GetImage") if entry.image_arn == arn])


def test_an_event_driven_wait_needs_two_get_image_calls(wired):
    emulator, queue_url = wired
    emulator.state.set_phase_seconds(1.0)  # the build is still running at the wait's first GetImage
    arn = start(emulator, "one")
    [event] = events_of(trigger(arn, queue_url, safety_poll_interval=600))
    assert event["status"] == "success" and event["outputs"]["ami_ids"]
    assert gets_of(emulator, arn) == 2  # one at the start, one to confirm the AVAILABLE event


@pytest.mark.parametrize("wired", [{"event_drop_share": 0.5, "seed": 7}], indirect=True)
def test_with_half_the_events_dropped_every_wait_finishes_through_the_safety_poll(wired):
    emulator, queue_url = wired
    arns = [start(emulator, f"drop-{index}") for index in range(6)]
    events = events_of(*(trigger(arn, queue_url, safety_poll_interval=3) for arn in arns))
    assert [event["status"] for event in events] == ["success"] * 6
    assert emulator.events is not None
    assert [record for record in emulator.events.journal() if record.outcome == "dropped"]


def test_a_failed_builds_event_fails_with_the_same_message_as_polling(wired):
    emulator, queue_url = wired
    messages = []
    for index, queue in enumerate([queue_url, None]):
        emulator.fail_next_builds("BUILDING", reason="Component failed: exit 3")
        arn = start(emulator, f"fail-{index}")
        [event] = events_of(trigger(arn, queue, waiter_delay=0.2))
        with pytest.raises(Exception) as error:
            resolve_event(event)
        messages.append(re.sub(r"\b(wf|step)-[0-9a-f-]{36}", "<id>", str(error.value).replace(arn, "<arn>")))
    assert messages[0] == messages[1] and "ended with status FAILED: Component failed: exit 3" in messages[0]


def test_two_triggerer_processes_sharing_a_queue_get_their_own_outcomes(wired, tmp_path):
    emulator, queue_url = wired
    arns = [start(emulator, f"shared-{index}") for index in range(8)]
    mine, theirs = arns[::2], arns[1::2]
    started = time.monotonic()
    processes = [
        subprocess.Popen(
            [sys.executable, str(TESTS / "event_waits.py"), queue_url, *group], stdout=subprocess.PIPE, text=True
        )
        for group in (mine, theirs)
    ]
    results = [json.loads(process.communicate(timeout=120)[0].strip().splitlines()[-1]) for process in processes]
    for group, result in zip((mine, theirs), results, strict=True):
        assert result["outcomes"] == dict.fromkeys(group, "success")
        assert set(result["deleted"]) <= set(group)  # never a message of the other process's builds
    # With safety polls 120 s apart, finishing this soon means every outcome came from the queue's events.
    assert time.monotonic() - started < 90


def test_the_asset_watcher_trigger_fires_once_per_matching_available_image(wired):
    emulator, queue_url = wired
    arns = seed_example_resources(client("imagebuilder", emulator.endpoint_url))
    other = client("imagebuilder", emulator.endpoint_url).create_image_pipeline(
        name="other-nightly",
        imageRecipeArn=arns["recipe"],
        infrastructureConfigurationArn=arns["infrastructure"],
    )["imagePipelineArn"]
    ib = client("imagebuilder", emulator.endpoint_url)
    emulator.fail_next_builds("BUILDING", reason="boom")
    failed = ib.start_image_pipeline_execution(imagePipelineArn=arns["pipeline"], clientToken="a")
    good = ib.start_image_pipeline_execution(imagePipelineArn=arns["pipeline"], clientToken="b")
    ib.start_image_pipeline_execution(imagePipelineArn=other, clientToken="c")
    watcher = ImageBuilderImageEventTrigger(queue_url=queue_url, image_pipeline_arn=arns["pipeline"])

    async def fired() -> list[dict]:
        events: list[dict] = []

        async def collect() -> None:
            async for event in watcher.run():
                events.append(event.payload)

        task = asyncio.ensure_future(collect())
        await asyncio.sleep(8)  # every build ends within about 2 s
        task.cancel()
        return events

    events = asyncio.run(fired())
    assert [event["image_build_version_arn"] for event in events] == [good["imageBuildVersionArn"]]
    assert events[0]["status"] == "AVAILABLE" and set(events[0]["ami_ids"]) == {"us-east-1", "eu-west-1"}
    assert events[0]["source_pipeline_arn"] == arns["pipeline"]
    assert failed["imageBuildVersionArn"] != good["imageBuildVersionArn"]


def test_the_check_command_finds_a_wired_queue_ready_and_names_what_a_bare_queue_lacks(wired, moto, capsys):
    from airflow_imagebuilder._adapters.sqs import main

    _, queue_url = wired
    assert main(["check", "--queue-url", queue_url]) == 0
    assert "OK: the queue is ready" in capsys.readouterr().out
    bare = client("sqs", moto.endpoint_url).create_queue(QueueName="bare-queue")["QueueUrl"]
    assert main(["check", "--queue-url", bare]) == 1
    output = capsys.readouterr().out
    assert "does not allow events.amazonaws.com" in output and "no EventBridge rule" in output


def test_two_waits_on_one_build_both_get_its_outcome_and_no_message_is_left(wired):
    emulator, queue_url = wired
    emulator.state.set_phase_seconds(1.0)
    arn = start(emulator, "twice")
    events = events_of(
        trigger(arn, queue_url, safety_poll_interval=600), trigger(arn, queue_url, safety_poll_interval=600)
    )
    assert [event["status"] for event in events] == ["success", "success"]
    leftover = client("sqs", emulator_moto_endpoint(queue_url)).receive_message(QueueUrl=queue_url, WaitTimeSeconds=2)
    assert leftover.get("Messages", []) == []  # every message of the build was deleted once its waits had ended


def emulator_moto_endpoint(queue_url: str) -> str:
    """moto's endpoint, from one of its queue URLs (``http://host:port/account/name``)."""
    return "/".join(queue_url.split("/")[:3])


def test_a_wait_on_an_image_version_arn_follows_the_events_of_its_newest_build(wired):
    emulator, queue_url = wired
    emulator.state.set_phase_seconds(1.0)
    arn = start(emulator, "by-version")
    version_arn = arn.rsplit("/", 1)[0]  # .../image/golden-base/1.0.0
    [event] = events_of(trigger(version_arn, queue_url, safety_poll_interval=600))
    assert event["status"] == "success"
    assert len([entry for entry in emulator.journal("GetImage") if entry.image_arn in (arn, version_arn)]) == 2


def test_a_queue_with_no_visibility_timeout_does_not_hand_a_message_back_while_its_delete_waits(moto, monkeypatch):
    # A queue's default visibility timeout may be 0; the consumer's receive asks for its own, longer than the time a
    # delete waits for company, so the message of a wait that ended is not received (and routed) again meanwhile.
    from airflow_imagebuilder._adapters import sqs as events

    sqs = client("sqs", moto.endpoint_url)
    queue_url = sqs.create_queue(QueueName="no-visibility-timeout", Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection_uri(moto.endpoint_url, moto.endpoint_url))
    consumer = events.QueueConsumer(events.QueueReader(queue_url, "aws_default"))
    ended, waiting = (f"arn:aws:imagebuilder:us-east-1:123456789012:image/golden/1.0.0/{index}" for index in (1, 2))
    body = {
        "source": events.EVENT_SOURCE,
        "detail-type": events.DETAIL_TYPE,
        "resources": [ended],
        "detail": {"state": {"status": "AVAILABLE"}, "previous-state": {"status": "INTEGRATING"}},
    }
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))

    async def scenario() -> None:
        async with consumer.subscription(waiting):  # another wait keeps the consumer receiving
            async with consumer.subscription(ended) as inbox:
                change = await asyncio.wait_for(inbox.get(), 30)
                assert change.status == "AVAILABLE"
                await consumer.delete(change)  # as the wait does once it has its outcome
            await asyncio.sleep(events.DELETE_LINGER_SECONDS + 1)

    asyncio.run(scenario())
    assert consumer.counts["received"] == 1
    assert consumer.counts["deleted"] == 1
