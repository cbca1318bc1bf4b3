"""Image Builder's own state change events, read from an SQS queue: one reader, shared consumers, the set-up check.

Image Builder sends an "EC2 Image Builder Image State Change" event to EventBridge on every status change of a
build; a rule delivers it to an SQS queue.  Every SQS call of the provider goes through a :class:`QueueReader`:
long-poll receives, batched deletes, releases, and a new client from a new hook (which reads the Airflow connection
again) after the credentials were refused, so a reader outlives a rotation of the connection's keys.

Within one triggerer event loop, every wait that names the same queue shares one :class:`QueueConsumer`: one
reader whose messages are routed to the wait following each ARN.  A message for an ARN this process does not wait
for is made visible again for other triggerers and never deleted; a message is deleted once its wait has the
outcome.  The asset watcher (``ImageBuilderImageEventTrigger``) has a reader of its own.  Malformed messages are
logged once and left to the queue's redrive policy.

``airflow-imagebuilder-events check --queue-url URL`` (a console script) checks that a queue is reachable and receives
Image Builder events.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import sys
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.providers.amazon.aws.hooks.sqs import SqsHook

from airflow_imagebuilder._decisions import retry
from airflow_imagebuilder._decisions.states import DETAIL_TYPE, EVENT_SOURCE, IN_PROGRESS_STATES

#: The EventBridge rule pattern that selects these events.
EVENT_PATTERN = {"source": [EVENT_SOURCE], "detail-type": [DETAIL_TYPE]}
#: Long poll of a receive (SQS's maximum).
WAIT_TIME_SECONDS = 20
#: After a receive that brought some messages but not a full batch, the next one waits this many seconds: builds
#: that end together send their events within moments, and one receive then carries them instead of one each.
#: Detection takes at most this much longer; the receives (and their CPU and requests) drop by the burst size.
RECEIVE_GATHER_SECONDS = 0.25
#: ReceiveMessage returns at most this many messages.
RECEIVE_BATCH = 10
#: Seconds between a failed receive and the next (the waits' safety polls go on meanwhile).
RECEIVE_RETRY_SECONDS = 5
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
    #: How many times SQS has handed out this message (1 the first time).
    receive_count: int = 1


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
            receive_count=int((message.get("Attributes") or {}).get("ApproximateReceiveCount", 1)),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


class QueueReader:
    """The SQS calls on one queue through an Airflow connection: receive, delete, release, and a new client when due.

    Its calls never raise (cancellation aside): a failure is logged, and what it concerned comes back (a message
    not deleted or not released is received again after its visibility timeout).  After credentials were refused
    the client is closed, and the next call builds one from :meth:`new_hook`: a hook reads its connection once, so
    a new one is how the keys an operator rotated, or a secrets backend renewed, reach a long-running reader.

    :param queue_url: the queue.
    :param aws_conn_id: the Airflow connection that reaches the queue.
    :param region_name: the AWS region.
    :param verify: whether or not to verify SSL certificates.
    :param botocore_config: configuration dictionary for the botocore client.
    :param log: the logger failures go to (default: this module's; a trigger gives its own).
    """

    def __init__(
        self,
        queue_url: str,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        log: Any = None,
    ) -> None:
        self.queue_url = queue_url
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config
        self.log = log or logging.getLogger(__name__)
        self._lock = asyncio.Lock()
        self._client: Any = None
        self._context: Any = None
        #: The last receive brought a partial batch: the next one waits a moment for company.
        self._gather = False
        self._malformed: set[str] = set()
        #: Messages received, routed to a wait, released for others, deleted, malformed: what tests and benchmarks read.
        self.counts = {"received": 0, "routed": 0, "released": 0, "deleted": 0, "malformed": 0}
        #: The image build version ARN of the messages deleted (the most recent ones).
        self.deleted_arns: collections.deque[str] = collections.deque(maxlen=FINISHED_REMEMBERED)

    def new_hook(self) -> AwsBaseHook:
        """A hook of the reader's connection, for its first client and after credentials were refused."""
        return SqsHook(
            aws_conn_id=self.aws_conn_id, region_name=self.region_name, verify=self.verify, config=self.botocore_config
        )

    async def client(self) -> Any:
        """The SQS client, built from a new hook when there is none (first use, or after :meth:`close`)."""
        async with self._lock:
            if self._client is None:
                context = await self.new_hook().get_async_conn()
                self._client = await context.__aenter__()
                self._context = context
            return self._client

    async def close(self) -> None:
        """Close the client; a later call builds a new one from a new hook."""
        context, self._context, self._client = self._context, None, None
        if context is not None:
            with contextlib.suppress(Exception):
                await context.__aexit__(None, None, None)

    async def _failed(self, action: str, error: Exception) -> None:
        """Log a failed call; after refused credentials, close the client so the next call reads the connection."""
        refused = retry.credentials_refused(error)
        renew = f"; reading connection {self.aws_conn_id!r} again for new credentials" if refused else ""
        self.log.warning("%s %s failed: %s%s", action, self.queue_url, error, renew)
        if refused:
            await self.close()

    async def receive(self) -> list[StateChange]:
        """One long poll: the state changes it brought (none after a failure, retried some seconds later)."""
        if self._gather:
            await asyncio.sleep(RECEIVE_GATHER_SECONDS)
        try:
            client = await self.client()
            response = await client.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=RECEIVE_BATCH,
                WaitTimeSeconds=WAIT_TIME_SECONDS,
                VisibilityTimeout=RECEIVE_VISIBILITY_SECONDS,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        except Exception as error:
            self._gather = False
            await self._failed("Receiving from", error)
            await asyncio.sleep(RECEIVE_RETRY_SECONDS)
            return []
        messages = response.get("Messages", [])
        self._gather = 0 < len(messages) < RECEIVE_BATCH
        self.counts["received"] += len(messages)
        changes = []
        for message in messages:
            change = parse_message(message)
            if change is not None:
                changes.append(change)
            else:
                self._malformed_message(message)
        return changes

    def _malformed_message(self, message: Mapping[str, Any]) -> None:
        self.counts["malformed"] += 1
        message_id = str(message.get("MessageId"))
        if message_id not in self._malformed:
            self._malformed.add(message_id)
            self.log.warning(
                "Message %s on %s is not an Image Builder state change event; left to the queue's redrive policy: "
                "%.200s",
                message_id,
                self.queue_url,
                message.get("Body"),
            )

    async def delete(self, changes: Sequence[StateChange]) -> None:
        """Delete the messages of ``changes`` (at most ten: one receive's worth) in one call."""
        if not changes:
            return
        entries = [{"Id": str(index), "ReceiptHandle": change.receipt_handle} for index, change in enumerate(changes)]
        try:
            client = await self.client()
            response = await client.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        except Exception as error:  # they come back after their visibility timeout, and are deleted then
            await self._failed(f"Deleting {len(entries)} messages from", error)
            return
        failed = {entry["Id"] for entry in response.get("Failed", [])}
        for index, change in enumerate(changes):
            if str(index) not in failed:
                self.counts["deleted"] += 1
                self.deleted_arns.append(change.image_build_version_arn)

    async def release(self, change: StateChange) -> None:
        """Make a message visible again for other readers: soon at first, later with each receive of it."""
        self.counts["released"] += 1
        seconds = min(MAX_RELEASE_SECONDS, RELEASE_SECONDS * 2 ** (change.receive_count - 1))
        try:
            client = await self.client()
            await client.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=change.receipt_handle, VisibilityTimeout=seconds
            )
        except Exception as error:  # it is visible again after the receive's visibility timeout anyway
            await self._failed("Releasing a message on", error)


class QueueConsumer:
    """One long-polling consumer of a queue, routing state changes to the waits subscribed to their ARN.

    :param reader: the reader of the queue.
    """

    def __init__(self, reader: QueueReader) -> None:
        self.reader = reader
        self.counts = reader.counts
        self.deleted_arns = reader.deleted_arns
        self._inboxes: dict[str, list[asyncio.Queue[StateChange]]] = {}
        #: Builds whose waits here have ended (most recent last): their late messages are deleted on sight.
        self._finished: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._pending_deletes: list[StateChange] = []
        #: The flush waiting for company, if any; and every flush task still running (stopped with the consumer).
        self._flusher: asyncio.Task[None] | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

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
            await self._flush_deletes()
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
        await self._flush_deletes()

    async def _flush_deletes(self) -> None:
        while self._pending_deletes:
            batch, self._pending_deletes = self._pending_deletes[:DELETE_BATCH], self._pending_deletes[DELETE_BATCH:]
            try:
                await self.reader.delete(batch)
            except asyncio.CancelledError:
                self._pending_deletes[:0] = batch  # not known to be deleted: the consumer's stop deletes them
                raise

    async def _consume(self) -> None:
        while self._inboxes:
            for change in await self.reader.receive():
                if await self._route(change):
                    await self.delete(change)

    async def _route(self, change: StateChange) -> bool:
        """Route one state change; True when its message is to be deleted now (a step on the way, or a late one)."""
        inboxes = self._inboxes.get(change.image_build_version_arn)
        if inboxes:
            if change.status in IN_PROGRESS_STATES:
                return True  # a step on the way: the waits act only on the end of a build
            self.counts["routed"] += 1
            for inbox in inboxes:
                inbox.put_nowait(change)
            return False
        if change.image_build_version_arn in self._finished:
            return True  # a late or repeated message of a wait that has its outcome
        await self.reader.release(change)
        return False

    async def _stop(self) -> None:
        task, self._task = self._task, None
        self._flusher = None
        running = [one for one in (task, *self._flushes) if one is not None and not one.done()]
        for one in running:
            one.cancel()
        for one in running:
            with contextlib.suppress(asyncio.CancelledError):
                await one
        await self._flush_deletes()
        if not self._inboxes:  # a wait that subscribed meanwhile goes on with the client
            await self.reader.close()


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
            consumers[key] = QueueConsumer(QueueReader(queue_url, aws_conn_id, region_name, verify, config))
        return consumers[key]


#: The consumers of this process, used by :class:`~airflow_imagebuilder.triggers.ImageBuilderImageTrigger`.
CONSUMERS = _Consumers()


# ------------------------------------------------------------------------------------------ set-up check
def check_queue(queue_url: str, aws_conn_id: str | None = "aws_default", region_name: str | None = None) -> list[str]:
    """Problems found with a completion queue (empty when it is ready); prints what it checks."""
    problems: list[str] = []
    sqs = SqsHook(aws_conn_id=aws_conn_id, region_name=region_name).conn
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
    parser = argparse.ArgumentParser(prog="airflow-imagebuilder-events", description=__doc__.splitlines()[0])
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
