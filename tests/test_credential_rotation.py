"""Rotated keys: a running event trigger and a queue-driven wait go on with the key now in the connection.

moto server checks every request's credentials against its IAM users once its no-auth allowance is spent
(``INITIAL_NO_AUTH_ACTION_COUNT``; set to 0 through ``/moto-api/reset-auth`` after the set-up), so a deleted access
key is refused (InvalidClientTokenId) as AWS refuses a revoked one; the emulator is told to refuse it too.  The
Image Builder events are put on moto's EventBridge by the test with an administrator's key: the emulator's own
publisher signs with a throwaway key that moto would refuse.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.exceptions
import pytest

from airflow_imagebuilder._adapters import sqs as events
from airflow_imagebuilder._adapters.async_clients import SHARED_CLIENTS
from airflow_imagebuilder.testing import ImageBuilderEmulator
from airflow_imagebuilder.testing.events import wire_events_to_queue
from airflow_imagebuilder.testing.processes import moto_process
from airflow_imagebuilder.triggers import ImageBuilderImageEventTrigger, ImageBuilderImageTrigger
from tests.conftest import IMAGE_RECIPE_ARN, INFRASTRUCTURE_ARN, REGION

pytestmark = pytest.mark.slow

ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
ALLOW_SQS = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}]}


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with moto_process(log_dir=tmp_path_factory.mktemp("moto")) as process:
        yield process


def set_no_auth_actions(endpoint_url: str, count: float) -> None:
    """How many more requests moto serves without checking their credentials (``inf``: never checks)."""
    request = urllib.request.Request(
        f"{endpoint_url}/moto-api/reset-auth", data=str(count).encode(), headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


def client(service: str, endpoint_url: str, key: tuple[str, str] = ("testing", "testing")) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
    )


@dataclasses.dataclass
class Rotation:
    """An Airflow connection whose IAM user's key can be rotated, a queue receiving Image Builder events."""

    moto_url: str
    emulator: ImageBuilderEmulator
    queue_url: str
    user: str
    admin: tuple[str, str]
    key: tuple[str, str]
    monkeypatch: pytest.MonkeyPatch

    def use(self, key: tuple[str, str]) -> None:
        """Put ``key`` in ``aws_default`` (SQS and EventBridge at moto, Image Builder at the emulator)."""
        extra = {
            "region_name": REGION,
            "endpoint_url": self.moto_url,
            "service_config": {"imagebuilder": {"endpoint_url": self.emulator.endpoint_url}},
        }
        connection = {"conn_type": "aws", "login": key[0], "password": key[1], "extra": extra}
        self.monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
        self.key = key

    def rotate(self) -> None:
        """A new key in the connection, the first one deleted (moto) and refused (emulator), as an operator does."""
        iam = client("iam", self.moto_url, self.admin)
        new = iam.create_access_key(UserName=self.user)["AccessKey"]
        old, _ = self.key
        self.use((new["AccessKeyId"], new["SecretAccessKey"]))
        iam.delete_access_key(UserName=self.user, AccessKeyId=old)
        self.emulator.deny_access_key(old)
        with pytest.raises(botocore.exceptions.ClientError, match="InvalidClientTokenId"):
            client("sqs", self.moto_url, (old, "revoked")).get_queue_url(QueueName=self.queue_url.rsplit("/", 1)[1])

    def start(self, token: str) -> str:
        return client("imagebuilder", self.emulator.endpoint_url).create_image(
            imageRecipeArn=IMAGE_RECIPE_ARN, infrastructureConfigurationArn=INFRASTRUCTURE_ARN, clientToken=token
        )["imageBuildVersionArn"]

    def announce_when_available(self, arn: str) -> None:
        """Wait for the build to be AVAILABLE and put its state change event on moto's EventBridge."""
        deadline = time.monotonic() + 30
        while self.emulator.state.status(arn) != "AVAILABLE":
            assert time.monotonic() < deadline, f"{arn} is still {self.emulator.state.status(arn)}"
            time.sleep(0.05)
        detail = {"previous-state": {"status": "INTEGRATING"}, "state": {"status": "AVAILABLE"}}
        entry = {
            "Source": events.EVENT_SOURCE,
            "DetailType": events.DETAIL_TYPE,
            "Resources": [arn],
            "Detail": json.dumps(detail),
        }
        answer = client("events", self.moto_url, self.admin).put_events(Entries=[entry])
        assert answer["FailedEntryCount"] == 0


@pytest.fixture
def rotation(moto: Any, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Rotation]:
    set_no_auth_actions(moto.endpoint_url, float("inf"))  # set-up first, unchecked
    name = re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)[-50:]
    iam = client("iam", moto.endpoint_url)
    keys = {}
    for user, policy in ((f"admin-{name}", ALLOW_ALL), (f"airflow-{name}", ALLOW_SQS)):
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="access", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        keys[user] = (key["AccessKeyId"], key["SecretAccessKey"])
    queue_url = wire_events_to_queue(client("events", moto.endpoint_url), client("sqs", moto.endpoint_url), name)
    # In-flight long polls end soon after a rotation, and Image Builder clients notice the edited connection soon.
    monkeypatch.setattr(events, "WAIT_TIME_SECONDS", 1)
    monkeypatch.setattr(SHARED_CLIENTS, "recheck_interval", 0.5)
    with ImageBuilderEmulator(phase_seconds=0.1) as emulator:
        setup = Rotation(
            moto.endpoint_url,
            emulator,
            queue_url,
            f"airflow-{name}",
            keys[f"admin-{name}"],
            keys[f"airflow-{name}"],
            monkeypatch,
        )
        setup.use(setup.key)
        set_no_auth_actions(moto.endpoint_url, 0)
        try:
            yield setup
        finally:
            set_no_auth_actions(moto.endpoint_url, float("inf"))


def test_an_event_trigger_fires_for_the_next_build_after_its_key_was_rotated(rotation: Rotation) -> None:
    watcher = ImageBuilderImageEventTrigger(queue_url=rotation.queue_url)

    async def scenario() -> tuple[list[str], list[str]]:
        fired: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def collect() -> None:
            async for event in watcher.run():
                await fired.put(event.payload)

        watching = asyncio.ensure_future(collect())
        try:
            before = rotation.start("before")
            await asyncio.to_thread(rotation.announce_when_available, before)
            arns = [(await asyncio.wait_for(fired.get(), 30))["image_build_version_arn"]]
            await asyncio.to_thread(rotation.rotate)
            await asyncio.sleep(3)  # the watcher's receives meet the revoked key
            after = rotation.start("after")
            await asyncio.to_thread(rotation.announce_when_available, after)
            arns.append((await asyncio.wait_for(fired.get(), 45))["image_build_version_arn"])
            return [before, after], arns
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)

    started, fired = asyncio.run(scenario())
    assert fired == started


def test_a_queue_driven_wait_ends_on_its_event_after_its_key_was_rotated(rotation: Rotation) -> None:
    rotation.emulator.hold_builds()
    arn = rotation.start("held")
    trigger = ImageBuilderImageTrigger(
        image_build_version_arn=arn,
        waiter_delay=0.5,
        waiter_max_attempts=600,
        completion_queue_url=rotation.queue_url,
        safety_poll_interval=600,  # far beyond the test: the outcome must come from the event
    )

    async def scenario() -> dict[str, Any]:
        waiting = asyncio.ensure_future(trigger.run().__anext__())
        while not rotation.emulator.journal("GetImage"):
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)  # the wait receives with the first key
        await asyncio.to_thread(rotation.rotate)
        await asyncio.sleep(3)  # the consumer's receives meet the revoked key
        rotation.emulator.release_builds()
        await asyncio.to_thread(rotation.announce_when_available, arn)
        return (await asyncio.wait_for(waiting, 45)).payload

    event = asyncio.run(scenario())
    assert event["status"] == "success" and event["outputs"]["ami_ids"]
    keys = [entry.access_key_id for entry in rotation.emulator.journal("GetImage") if entry.outcome == "ok"]
    assert keys[-1] == rotation.key[0]  # the outcome was confirmed with the new key
