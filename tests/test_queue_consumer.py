"""The shared queue consumer and its reader, against a fake SQS client: batched deletes, gathered receives, renewal."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import botocore.exceptions
import pytest

from airflow_imagebuilder._adapters import sqs as events
from airflow_imagebuilder._adapters.sqs import QueueConsumer, QueueReader, StateChange

QUEUE_URL = "http://sqs.local/123456789012/waits"


def arn(index: int) -> str:
    return f"arn:aws:imagebuilder:us-east-1:123456789012:image/golden/1.0.0/{index}"


def message(index: int, status: str = "AVAILABLE") -> dict[str, Any]:
    body = {
        "source": events.EVENT_SOURCE,
        "detail-type": events.DETAIL_TYPE,
        "resources": [arn(index)],
        "detail": {"state": {"status": status}, "previous-state": {"status": "INTEGRATING"}},
    }
    return {"MessageId": f"m{index}", "ReceiptHandle": f"r{index}", "Body": json.dumps(body)}


def change(index: int) -> StateChange:
    parsed = events.parse_message(message(index))
    assert parsed is not None
    return parsed


class FakeSqs:
    """Receives hand out the scripted batches, then block like an empty long poll; calls are recorded."""

    def __init__(
        self,
        batches: list[list[dict[str, Any]]] | None = None,
        hang_first_delete: bool = False,
        errors: list[Exception] | None = None,
    ) -> None:
        self.batches = list(batches or [])
        self.errors = list(errors or [])
        self.receives: list[float] = []
        self.deletes: list[list[str]] = []
        self.hang_first_delete = hang_first_delete

    async def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        self.receives.append(time.monotonic())
        if self.errors:
            raise self.errors.pop(0)
        if self.batches:
            return {"Messages": self.batches.pop(0)}
        await asyncio.sleep(3600)
        return {}

    async def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        if self.hang_first_delete:
            self.hang_first_delete = False
            await asyncio.sleep(3600)
        self.deletes.append([entry["ReceiptHandle"] for entry in Entries])
        return {"Successful": [{"Id": entry["Id"]} for entry in Entries]}

    async def change_message_visibility(self, **kwargs: Any) -> None:
        return None


class FakeHook:
    def __init__(self, client: FakeSqs) -> None:
        self.client = client

    async def get_async_conn(self) -> Any:
        client = self.client

        class Context:
            async def __aenter__(self) -> FakeSqs:
                return client

            async def __aexit__(self, *exc_info: object) -> None:
                return None

        return Context()


class FakeReader(QueueReader):
    """A reader whose hooks hand out the fake client (one of ``clients`` per hook, the last one for the rest)."""

    def __init__(self, *clients: FakeSqs) -> None:
        super().__init__(QUEUE_URL, log=logging.getLogger("test"))
        self.clients = list(clients)
        self.hooks = 0

    def new_hook(self) -> Any:
        self.hooks += 1
        return FakeHook(self.clients.pop(0) if len(self.clients) > 1 else self.clients[0])


def consumer_of(client: FakeSqs) -> QueueConsumer:
    return QueueConsumer(FakeReader(client))


@pytest.fixture(autouse=True)
def short_delays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "DELETE_LINGER_SECONDS", 0.05)
    monkeypatch.setattr(events, "RECEIVE_GATHER_SECONDS", 0.1)
    monkeypatch.setattr(events, "RECEIVE_RETRY_SECONDS", 0.01)


def test_deletes_of_waits_ending_one_by_one_share_one_batch_call():
    sqs = FakeSqs()
    consumer = consumer_of(sqs)

    async def scenario() -> None:
        async with consumer.subscription(arn(99)):
            for index in range(3):
                await consumer.delete(change(index))
                await asyncio.sleep(0.005)
            assert sqs.deletes == []  # waiting for company
            await asyncio.sleep(0.1)
            assert sqs.deletes == [["r0", "r1", "r2"]]

    asyncio.run(scenario())
    assert consumer.counts["deleted"] == 3


def test_ten_pending_deletes_go_at_once():
    sqs = FakeSqs()
    consumer = consumer_of(sqs)

    async def scenario() -> None:
        async with consumer.subscription(arn(99)):
            for index in range(10):
                await consumer.delete(change(index))
            assert sqs.deletes == [[f"r{index}" for index in range(10)]]

    asyncio.run(scenario())


def test_the_consumer_stop_deletes_what_is_pending_and_a_batch_cut_off_midway():
    sqs = FakeSqs(hang_first_delete=True)
    consumer = consumer_of(sqs)

    async def scenario() -> None:
        async with consumer.subscription(arn(99)):
            await consumer.delete(change(0))
            await asyncio.sleep(0.1)  # the linger is over: its DeleteMessageBatch hangs
            await consumer.delete(change(1))

    asyncio.run(scenario())
    assert sorted(handle for batch in sqs.deletes for handle in batch) == ["r0", "r1"]
    assert consumer.counts["deleted"] == 2


def test_the_consumer_stop_deletes_what_is_pending_while_the_connection_is_read_again():
    sqs = FakeSqs()
    consumer = consumer_of(sqs)

    async def scenario() -> None:
        async with consumer.subscription(arn(99)):
            await asyncio.sleep(0.01)
            await consumer.reader.close()  # as after refused credentials: no client until the next call
            await consumer.delete(change(0))

    asyncio.run(scenario())
    assert sqs.deletes == [["r0"]]


def test_a_cancelled_wait_leaves_its_build_messages_to_the_wait_that_follows_it_elsewhere():
    sqs = FakeSqs(batches=[[message(1)], [message(1)]])
    consumer = consumer_of(sqs)

    async def cancelled_wait() -> None:
        async with consumer.subscription(arn(1)):
            await asyncio.sleep(3600)  # the end event waits in the inbox; the trigger is cancelled first

    async def scenario() -> None:
        async with consumer.subscription(arn(2)):
            wait = asyncio.create_task(cancelled_wait())
            while consumer.counts["routed"] < 1:
                await asyncio.sleep(0.005)
            wait.cancel()
            with pytest.raises(asyncio.CancelledError):
                await wait
            while consumer.counts["received"] < 2:  # the same event again: not this consumer's any more
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.1)

    asyncio.run(scenario())
    assert sqs.deletes == []
    assert consumer.counts["released"] == 1


def test_a_receive_short_of_a_full_batch_lets_the_next_one_gather_for_a_moment():
    sqs = FakeSqs(batches=[[message(1)], [message(2), message(3)]])
    consumer = consumer_of(sqs)

    async def scenario() -> list[StateChange]:
        received = []
        async with consumer.subscription(arn(1)) as first, consumer.subscription(arn(2)) as second:
            received.append(await first.get())
            received.append(await second.get())
            while len(sqs.receives) < 3:
                await asyncio.sleep(0.01)
        return received

    received = asyncio.run(scenario())
    assert [one.image_build_version_arn for one in received] == [arn(1), arn(2)]
    assert sqs.receives[1] - sqs.receives[0] >= 0.1
    assert sqs.receives[2] - sqs.receives[1] >= 0.1
    assert consumer.counts["routed"] == 2


def test_a_full_receive_is_followed_by_the_next_at_once():
    sqs = FakeSqs(batches=[[message(index) for index in range(10)]])
    consumer = consumer_of(sqs)

    async def scenario() -> None:
        async with consumer.subscription(arn(0)) as inbox:
            await inbox.get()
            while len(sqs.receives) < 2:
                await asyncio.sleep(0.005)

    asyncio.run(scenario())
    assert sqs.receives[1] - sqs.receives[0] < 0.1


def client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    response: Any = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return botocore.exceptions.ClientError(response, "ReceiveMessage")


@pytest.mark.parametrize(
    "error",
    [
        client_error("InvalidClientTokenId", 403),  # a revoked or deleted access key
        client_error("ExpiredToken", 400),  # a session that ended
        client_error("AccessDenied", 400),  # the query protocol's spelling
        client_error("403", 403),  # an answer botocore could not parse, with its status for a code
        botocore.exceptions.NoCredentialsError(),
    ],
    ids=str,
)
def test_after_refused_credentials_the_reader_builds_its_client_from_a_new_hook(error):
    revoked, renewed = FakeSqs(errors=[error]), FakeSqs(batches=[[message(1)]])
    reader = FakeReader(revoked, renewed)

    async def scenario() -> list[StateChange]:
        assert await reader.receive() == []
        return await reader.receive()

    assert [change.image_build_version_arn for change in asyncio.run(scenario())] == [arn(1)]
    assert reader.hooks == 2 and len(revoked.receives) == len(renewed.receives) == 1


@pytest.mark.parametrize(
    "error",
    [client_error("ServiceUnavailable", 503), botocore.exceptions.ReadTimeoutError(endpoint_url=QUEUE_URL)],
    ids=str,
)
def test_any_other_failed_receive_is_retried_with_the_same_client(error):
    sqs = FakeSqs(batches=[[message(1)]], errors=[error])
    reader = FakeReader(sqs, FakeSqs())

    async def scenario() -> list[StateChange]:
        assert await reader.receive() == []
        return await reader.receive()

    assert [change.image_build_version_arn for change in asyncio.run(scenario())] == [arn(1)]
    assert reader.hooks == 1 and len(sqs.receives) == 2
