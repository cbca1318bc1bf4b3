"""Image Builder's own state change events, read from an SQS queue: shared consumers and the set-up check.

Image Builder sends an "EC2 Image Builder Image State Change" event to EventBridge on every status change of a
build; a rule delivers it to an SQS queue.  Within one triggerer event loop, every wait that names the same queue
shares one :class:`QueueConsumer`: one long poll (``WaitTimeSeconds=20``) whose messages are routed to the wait
following each ARN.  A message for an ARN this process does not wait for is made visible again for other
triggerers and never deleted; a message is deleted once its wait has the outcome.  Malformed messages are logged
once and left to the queue's redrive policy.

``python -m airflow_imagebuilder.events check --queue-url URL`` checks that a queue is reachable and receives
Image Builder events.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import json
import sys
import weakref
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from airflow_imagebuilder.states import IN_PROGRESS_STATES

EVENT_SOURCE = "aws.imagebuilder"
DETAIL_TYPE = "EC2 Image Builder Image State Change"
#: The EventBridge rule pattern that selects these events.
EVENT_PATTERN = {"source": [EVENT_SOURCE], "detail-type": [DETAIL_TYPE]}
#: Long poll of the shared consumers (SQS's maximum).
WAIT_TIME_SECONDS = 20
#: After a receive that brought some messages but not a full batch, the next one waits this many seconds: builds
#: that end together send their events within moments, and one receive then carries them instead of one each.
#: Detection takes at most this much longer; the receives (and their CPU and requests) drop by the burst size.
RECEIVE_GATHER_SECONDS = 0.25
#: ReceiveMessage returns at most this many messages.
RECEIVE_BATCH = 10
#: A message for a build nobody here waits for is visible again after this many seconds, doubling with each
#: receive up to :data:`MAX_RELEASE_SECONDS`, so foreign messages reach other triggerers without churning here.
RELEASE_SECONDS = 1
MAX_RELEASE_SECONDS = 60
#: Seconds a received message stays hidden from other receives (asked for on each receive, whatever the queue's
#: default, which may be 0): longer than a delete waits for company, so the message of a wait that ended is not
#: received again meanwhile, and short enough that a triggerer that dies leaves its messages to the others soon.
RECEIVE_VISIBILITY_SECONDS = 30
#: DeleteMessageBatch takes at most this many entries.
DELETE_BATCH = 10
#: A message to delete waits this many seconds for others to share its DeleteMessageBatch (ten go at once): waits
#: end one by one, and a call per message would cost the triggerer about as much as the polls events save.  Well
#: inside :data:`RECEIVE_VISIBILITY_SECONDS`; a message that comes back anyway is deleted on sight as a late one.
DELETE_LINGER_SECONDS = 2.0
#: Builds remembered as finished per consumer (their late messages are deleted).
FINISHED_REMEMBERED = 10_000


@dataclasses.dataclass(frozen=True)
class StateChange:
    """One state change event, as received from the queue."""

    image_build_version_arn: str
    status: str
    reason: str | None
    previous_status: str | None
    message_id: str
    receipt_handle: str
    time: str | None = None


def parse_message(message: Mapping[str, Any]) -> StateChange | None:
    """The state change an SQS message carries, or None when it is not an Image Builder state change event."""
    try:
        event = json.loads(message["Body"])
        if event.get("source") != EVENT_SOURCE or event.get("detail-type") != DETAIL_TYPE:
            return None
        [arn] = [resource for resource in event["resources"] if ":image/" in resource]
        state = event["detail"]["state"]
        previous = event["detail"].get("previous-state") or {}
        return StateChange(
            image_build_version_arn=str(arn),
            status=str(state["status"]),
            reason=state.get("reason"),
            previous_status=previous.get("status"),
            message_id=str(message["MessageId"]),
            receipt_handle=str(message["ReceiptHandle"]),
            time=event.get("time"),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def sqs_hook(aws_conn_id: str | None, region_name: str | None, verify: Any, botocore_config: Any) -> AwsBaseHook:
    return AwsBaseHook(
        aws_conn_id=aws_conn_id, region_name=region_name, verify=verify, config=botocore_config, client_type="sqs"
    )


class QueueConsumer:
    """One long-polling consumer of a queue, routing state changes to the waits subscribed to their ARN.

    :param hook: an ``AwsBaseHook`` with ``client_type="sqs"`` (its connection reaches the queue).
    :param queue_url: the queue.
    """

    def __init__(self, hook: AwsBaseHook, queue_url: str) -> None:
        self.hook = hook
        self.queue_url = queue_url
        self._inboxes: dict[str, list[asyncio.Queue[StateChange]]] = {}
        #: Builds whose waits here have ended (most recent last): their late messages are deleted on sight.
        self._finished: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._client_lock = asyncio.Lock()
        self._pending_deletes: list[StateChange] = []
        #: The flush waiting for company, if any; and every flush task still running (stopped with the consumer).
        self._flusher: asyncio.Task[None] | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._client: Any = None
        self._context: Any = None
        self._malformed: set[str] = set()
        #: Messages received, released for others, deleted, malformed: what a test or benchmark checks.
        self.counts = {"received": 0, "routed": 0, "released": 0, "deleted": 0, "malformed": 0}
        #: The image build version ARN of the messages deleted (the most recent ones).
        self.deleted_arns: collections.deque[str] = collections.deque(maxlen=FINISHED_REMEMBERED)

    @contextlib.asynccontextmanager
    async def subscription(self, image_build_version_arn: str) -> AsyncIterator[asyncio.Queue[StateChange]]:
        """Receive the state changes of one build for the ``async with`` block.

        Several waits may follow one build; each gets every message of it.  When the last of them leaves the block
        normally (its wait has the outcome), the messages still in its inbox are deleted, and so are the build's
        messages that arrive later.  A wait that leaves by an exception (cancelled: its trigger moves to another
        triggerer, or failed) deletes nothing: another wait may follow the build, and its messages come back.
        """
        arn = image_build_version_arn
        inbox: asyncio.Queue[StateChange] = asyncio.Queue()
        self._inboxes.setdefault(arn, []).append(inbox)
        self._finished.pop(arn, None)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._consume())
        ended = False
        try:
            yield inbox
            ended = True
        finally:
            self._inboxes[arn].remove(inbox)
            if not self._inboxes[arn]:
                del self._inboxes[arn]
                if ended:
                    self._finished[arn] = None
                    while len(self._finished) > FINISHED_REMEMBERED:
                        self._finished.popitem(last=False)
                    while not inbox.empty():
                        await self.delete(inbox.get_nowait())
            if not self._inboxes:
                await self._stop()

    async def delete(self, change: StateChange) -> None:
        """Delete a message whose wait has what it needed from it: in a batch, ten at a time.

        Pending deletes go out when ten are pending, :data:`DELETE_LINGER_SECONDS` after the first of them, or
        when the consumer stops.
        """
        self._pending_deletes.append(change)
        if len(self._pending_deletes) >= DELETE_BATCH:
            await self._flush_deletes(await self._client_ready())
        elif self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_later())
            self._flushes.add(self._flusher)
            self._flusher.add_done_callback(self._flushes.discard)

    async def _flush_later(self) -> None:
        try:
            await asyncio.sleep(DELETE_LINGER_SECONDS)
        finally:
            if self._flusher is asyncio.current_task():
                self._flusher = None  # deletes queued from now on start a new linger
        await self._flush_deletes(await self._client_ready())

    async def _flush_deletes(self, client: Any) -> None:
        while self._pending_deletes:
            batch, self._pending_deletes = self._pending_deletes[:DELETE_BATCH], self._pending_deletes[DELETE_BATCH:]
            try:
                await self._delete_batch(client, batch)
            except asyncio.CancelledError:
                self._pending_deletes[:0] = batch  # not known to be deleted: the consumer's stop deletes them
                raise

    async def _client_ready(self) -> Any:
        async with self._client_lock:
            if self._client is None:
                self._context = await self.hook.get_async_conn()
                self._client = await self._context.__aenter__()
            return self._client

    async def _consume(self) -> None:
        while self._inboxes:
            try:
                client = await self._client_ready()
                response = await client.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=RECEIVE_BATCH,
                    WaitTimeSeconds=WAIT_TIME_SECONDS,
                    VisibilityTimeout=RECEIVE_VISIBILITY_SECONDS,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                )
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the waits' safety polls go on; try the queue again shortly
                self.hook.log.warning("Receiving from %s failed: %s; retrying in 5s", self.queue_url, error)
                await self._reconnect()  # with the connection read again: its keys may have been rotated
                await asyncio.sleep(5)
                continue
            messages = response.get("Messages", [])
            for message in messages:
                if change := await self._route(client, message):
                    await self.delete(change)
            if 0 < len(messages) < RECEIVE_BATCH:
                await asyncio.sleep(RECEIVE_GATHER_SECONDS)

    async def _delete_batch(self, client: Any, changes: list[StateChange]) -> None:
        """Delete messages nobody needs any more, in one call (at most ten: one receive's worth)."""
        entries = [{"Id": str(index), "ReceiptHandle": change.receipt_handle} for index, change in enumerate(changes)]
        try:
            response = await client.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        except Exception as error:  # they come back after their visibility timeout, and are deleted then
            self.hook.log.warning("Deleting %d messages from %s failed: %s", len(entries), self.queue_url, error)
            return
        failed = {entry["Id"] for entry in response.get("Failed", [])}
        for index, change in enumerate(changes):
            if str(index) not in failed:
                self.counts["deleted"] += 1
                self.deleted_arns.append(change.image_build_version_arn)

    async def _route(self, client: Any, message: Mapping[str, Any]) -> StateChange | None:
        """Route one message; return it when it is to be deleted now (a step on the way, or a late message)."""
        self.counts["received"] += 1
        change = parse_message(message)
        if change is None:
            self.counts["malformed"] += 1
            message_id = str(message.get("MessageId"))
            if message_id not in self._malformed:
                self._malformed.add(message_id)
                self.hook.log.warning(
                    "Message %s on %s is not an Image Builder state change event; left to the queue's redrive "
                    "policy: %.200s",
                    message_id,
                    self.queue_url,
                    message.get("Body"),
                )
            return None
        inboxes = self._inboxes.get(change.image_build_version_arn)
        if inboxes:
            if change.status in IN_PROGRESS_STATES:
                return change  # a step on the way: the waits act only on the end of a build
            self.counts["routed"] += 1
            for inbox in inboxes:
                inbox.put_nowait(change)
            return None
        if change.image_build_version_arn in self._finished:
            return change  # a late or repeated message of a wait that has its outcome
        receives = int((message.get("Attributes") or {}).get("ApproximateReceiveCount", 1))
        self.counts["released"] += 1
        with contextlib.suppress(Exception):
            await client.change_message_visibility(
                QueueUrl=self.queue_url,
                ReceiptHandle=change.receipt_handle,
                VisibilityTimeout=min(MAX_RELEASE_SECONDS, RELEASE_SECONDS * 2 ** (receives - 1)),
            )
        return None

    async def _reconnect(self) -> None:
        async with self._client_lock:
            context, self._context, self._client = self._context, None, None
            for name in ("conn", "conn_config", "_client"):
                self.hook.__dict__.pop(name, None)
        if context is not None:
            with contextlib.suppress(Exception):
                await context.__aexit__(None, None, None)

    async def _stop(self) -> None:
        task, self._task = self._task, None
        self._flusher = None
        client, context = self._client, self._context
        self._client = self._context = None  # a subscriber arriving meanwhile builds its own
        running = [one for one in (task, *self._flushes) if one is not None and not one.done()]
        for one in running:
            one.cancel()
        for one in running:
            with contextlib.suppress(asyncio.CancelledError):
                await one
        if self._pending_deletes and client is None:  # the connection was being read again: one for these deletes
            try:
                context = await self.hook.get_async_conn()
                client = await context.__aenter__()
            except Exception as error:  # they come back after their visibility timeout, and are deleted then
                self.hook.log.warning("Deleting messages from %s: no connection: %s", self.queue_url, error)
        if self._pending_deletes and client is not None:
            await self._flush_deletes(client)
        if context is not None:
            await context.__aexit__(None, None, None)


class _Consumers:
    """The consumers of each event loop, by queue and connection settings."""

    def __init__(self) -> None:
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], QueueConsumer]] = (
            weakref.WeakKeyDictionary()
        )

    def get(
        self, queue_url: str, aws_conn_id: str | None, region_name: str | None, verify: Any, config: Any
    ) -> QueueConsumer:
        consumers = self._loops.setdefault(asyncio.get_running_loop(), {})
        key = (queue_url, aws_conn_id, region_name, str(verify), json.dumps(config, sort_keys=True, default=str))
        if key not in consumers:
            consumers[key] = QueueConsumer(sqs_hook(aws_conn_id, region_name, verify, config), queue_url)
        return consumers[key]


#: The consumers of this process, used by :class:`~airflow_imagebuilder.triggers.ImageBuilderImageTrigger`.
CONSUMERS = _Consumers()


# ------------------------------------------------------------------------------------------ set-up check
def check_queue(queue_url: str, aws_conn_id: str | None = "aws_default", region_name: str | None = None) -> list[str]:
    """Problems found with a completion queue (empty when it is ready); prints what it checks."""
    problems: list[str] = []
    sqs = sqs_hook(aws_conn_id, region_name, None, None).conn
    try:
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    except Exception as error:
        return [f"the queue is not reachable with connection {aws_conn_id!r}: {error}"]
    print(f"queue reachable: {attributes.get('QueueArn')}")
    policy = attributes.get("Policy") or ""
    if "events.amazonaws.com" not in policy:
        problems.append("the queue policy does not allow events.amazonaws.com to send messages (sqs:SendMessage)")
    events = AwsBaseHook(aws_conn_id=aws_conn_id, region_name=region_name, client_type="events").conn
    try:
        rules = events.list_rule_names_by_target(TargetArn=attributes["QueueArn"]).get("RuleNames", [])
    except Exception as error:
        rules = []
        problems.append(f"could not list the EventBridge rules targeting the queue: {error}")
    matching = []
    for rule in rules:
        pattern = json.loads(events.describe_rule(Name=rule).get("EventPattern") or "{}")
        if EVENT_SOURCE in pattern.get("source", []):
            matching.append(rule)
    print(f"EventBridge rules sending Image Builder events here: {matching or 'none'}")
    if not matching:
        problems.append(f"no EventBridge rule with pattern {json.dumps(EVENT_PATTERN)} targets the queue")
    peeked = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=1)
    changes = [change for change in map(parse_message, peeked.get("Messages", [])) if change is not None]
    print(f"Image Builder events waiting in the queue now: {len(changes)} (of {len(peeked.get('Messages', []))})")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airflow_imagebuilder.events", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="check that a queue is reachable and receives Image Builder events")
    check.add_argument("--queue-url", required=True)
    check.add_argument("--conn-id", default="aws_default", help="Airflow connection (default aws_default)")
    check.add_argument("--region", default=None)
    arguments = parser.parse_args(argv)
    problems = check_queue(arguments.queue_url, arguments.conn_id, arguments.region)
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print("OK: the queue is ready for event-driven waits" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
