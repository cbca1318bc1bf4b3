"""Image Builder's state change events, sent by the emulator to EventBridge (moto server in tests and the demo).

The service sends an ``EC2 Image Builder Image State Change`` event to the account's default event bus each time a
build's status changes: source ``aws.imagebuilder``, the image build version ARN as the only resource, and a detail
holding the new and the previous state::

    {"previous-state": {"status": "TESTING"}, "state": {"status": "AVAILABLE"}}

A state carries ``reason`` when the service gives one (a FAILED or CANCELLED build).  The creation of a build is not
a change (there is no previous state), so its first event is PENDING to CREATING.  Delivery is best effort, so
:class:`EventPublisher` can drop or delay a share of events, drawn from a seeded random source so that a run can be
repeated; every event it decides on is kept in its journal.

Builds do not store their status: it follows from the clock when read.  The publisher notices changes itself: a
thread wakes when the next phase of an in-flight build is due (and every ``poll_interval`` seconds for new builds
and cancellations), and a :class:`~.clock.ManualClock` tells it about every ``advance()``.  Each change of each
build is sent once, in order, at the time the build's timeline says it happened, including the phases a clock jump
went past.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from airflow_imagebuilder._decisions.states import (
    DETAIL_TYPE,
    EVENT_SOURCE,
    FAILURE_STATES,
    IN_PROGRESS_STATES,
    SUCCESS_STATES,
)
from airflow_imagebuilder.testing.clock import ManualClock, Seconds, seconds_range
from airflow_imagebuilder.testing.processes import local_client
from airflow_imagebuilder.testing.resources import Build

if TYPE_CHECKING:
    from airflow_imagebuilder.testing.backend import ImageBuilderBackend

#: Source and detail-type of the events, as the provider reads them.
STATE_CHANGE_DETAIL_TYPE = DETAIL_TYPE
#: The EventBridge rule pattern matching Image Builder's state change events.
STATE_CHANGE_PATTERN: dict[str, list[str]] = {"source": [EVENT_SOURCE], "detail-type": [STATE_CHANGE_DETAIL_TYPE]}
#: The statuses that end a build: all an event-driven wait needs to hear of.
END_STATUSES: tuple[str, ...] = (*sorted(SUCCESS_STATES), *sorted(FAILURE_STATES))


def state_change_pattern(statuses: Sequence[str] | None = None) -> dict[str, Any]:
    """The EventBridge rule pattern of Image Builder's state changes (to ``statuses`` only, when given)."""
    pattern: dict[str, Any] = dict(STATE_CHANGE_PATTERN)
    if statuses:
        pattern["detail"] = {"state": {"status": list(statuses)}}
    return pattern


#: PutEvents takes at most this many entries per call.
PUT_EVENTS_BATCH = 10


def _share(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}: {value} must be between 0 and 1")
    return value


def state_change_detail(
    status: str, previous_status: str, reason: str | None = None, previous_reason: str | None = None
) -> dict[str, Any]:
    """The ``detail`` of a state change event: the new ``state`` and the ``previous-state``."""
    state: dict[str, Any] = {"status": status}
    if reason is not None:
        state["reason"] = reason
    previous: dict[str, Any] = {"status": previous_status}
    if previous_reason is not None:
        previous["reason"] = previous_reason
    return {"previous-state": previous, "state": state}


def timeline(build: Build) -> list[tuple[float, str]]:
    """Every status ``build`` walks, with the clock time it begins, as :meth:`Build.status` computes them.

    A status that begins exactly when the build is cancelled is kept: it was the status until that moment.
    """
    walk = [(build.created_at, build.phases[0][0])]
    for index, (phase, _start, end) in enumerate(build.phases):
        begins = build.created_at + end
        if build.failure is not None and build.failure.phase == phase:
            walk.append((begins, "FAILED"))
            break
        walk.append((begins, build.phases[index + 1][0] if index + 1 < len(build.phases) else "AVAILABLE"))
    if build.cancelled_at is not None:
        walk = [step for step in walk if step[0] <= build.cancelled_at] + [(build.cancelled_at, "CANCELLED")]
    return walk


@dataclasses.dataclass
class EventRecord:
    """One state change the emulator decided to report, and what became of it.

    :param sequence: position among all the emulator's events (0 first).
    :param image_build_version_arn: the build (the event's only resource).
    :param region: the build's region, where the event goes.
    :param status: the new status; ``previous_status`` the one before.
    :param reason: ``state.reason`` of the new status, when the service gives one.
    :param time: the event's ``time``: when the change happened, ISO 8601 UTC.
    :param outcome: ``pending`` (to be sent now), ``delayed`` (to be sent after ``delay`` seconds), ``dropped``
        (never sent), ``sent`` (PutEvents accepted it, as ``event_id``) or ``failed`` (``error`` says why).
    :param delay: seconds the event was held back before sending (0 when not delayed).
    """

    sequence: int
    image_build_version_arn: str
    region: str
    status: str
    previous_status: str
    reason: str | None
    time: str
    outcome: str
    delay: float = 0.0
    event_id: str | None = None
    error: str | None = None
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)

    def put_events_entry(self) -> dict[str, Any]:
        """The PutEvents entry of this event, for the default event bus."""
        return {
            "Source": EVENT_SOURCE,
            "DetailType": STATE_CHANGE_DETAIL_TYPE,
            "Resources": [self.image_build_version_arn],
            "Detail": json.dumps(self.detail),
            "Time": dt.datetime.fromisoformat(self.time.replace("Z", "+00:00")),
            "EventBusName": "default",
        }


def events_client(endpoint_url: str, region: str) -> Any:
    """An EventBridge client for ``endpoint_url`` with throwaway credentials and short timeouts."""
    import botocore.config

    retries = {"mode": "standard", "total_max_attempts": 3}
    config = botocore.config.Config(connect_timeout=2, read_timeout=10, retries=retries)
    return local_client("events", endpoint_url, region, config)


class EventPublisher:
    """Sends the state change event of every status change of every build of ``backend`` to EventBridge.

    :param backend: the emulator's backend, whose builds it follows.
    :param endpoint_url: the EventBridge endpoint (moto server), e.g. ``http://127.0.0.1:5000``.
    :param drop_share: share of events never sent (0 to 1).
    :param delay: seconds (real time) a delayed event is held back: a number or a ``[low, high]`` range.
    :param delay_share: share of the events not dropped that are delayed (all of them by default).
    :param seed: seed of the random sources that pick dropped and delayed events and draw delays.
    :param poll_interval: real seconds between looks for new builds and cancellations.
    :param client_factory: ``(endpoint_url, region) -> events client``; :func:`events_client` by default.
    """

    def __init__(
        self,
        backend: ImageBuilderBackend,
        endpoint_url: str,
        *,
        drop_share: float = 0.0,
        delay: Seconds = 0.0,
        delay_share: float = 1.0,
        seed: int = 0,
        poll_interval: float = 0.05,
        client_factory: Callable[[str, str], Any] = events_client,
    ) -> None:
        self.backend = backend
        self.endpoint_url = endpoint_url
        self.poll_interval = poll_interval
        self._client_factory = client_factory
        self._clients: dict[str, Any] = {}
        self._drop_random = random.Random(seed)
        self._delay_random = random.Random(seed + 1)
        self._drop_share = 0.0
        self._delay: tuple[float, float] = (0.0, 0.0)
        self._delay_share = 1.0
        self.set_faults(drop_share, delay, delay_share)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._records: list[EventRecord] = []
        #: Sends due: (real time due, sequence).
        self._queue: list[tuple[float, int]] = []
        self._sending = 0
        self._known_builds = 0
        #: In-flight builds with the last status reported.
        self._following: dict[str, str] = {}
        self._thread: threading.Thread | None = None
        self._running = False

    # ---------------------------------------------------------------- controls
    def set_faults(self, drop_share: float = 0.0, delay: Seconds = 0.0, delay_share: float = 1.0) -> None:
        """Drop ``drop_share`` of the events from now on and delay ``delay_share`` of the others by ``delay``."""
        drop, delayed = _share("drop_share", drop_share), _share("delay_share", delay_share)
        seconds = seconds_range("event_delay", delay)
        self._drop_share, self._delay_share, self._delay = drop, delayed, seconds

    def faults(self) -> dict[str, Any]:
        """The current ``drop_share``, ``delay`` (``[low, high]``) and ``delay_share``."""
        return {"drop_share": self._drop_share, "delay": list(self._delay), "delay_share": self._delay_share}

    def journal(self, image_build_version_arn: str | None = None) -> list[EventRecord]:
        """Every event decided on so far (of one build, if given), oldest first: sent, dropped, delayed."""
        with self._lock:
            return [
                dataclasses.replace(record)
                for record in self._records
                if image_build_version_arn is None or record.image_build_version_arn == image_build_version_arn
            ]

    def flush(self, timeout: float = 10.0) -> bool:
        """Notice the changes due by now and wait until every event not dropped is sent (or failed).

        Returns False if some are still waiting after ``timeout`` seconds.
        """
        self.scan()
        deadline = time.monotonic() + timeout
        with self._wake:
            while self._queue or self._sending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wake.wait(remaining)
        return True

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> EventPublisher:
        """Follow the builds and send their events from a background thread."""
        if self._thread is not None:
            return self
        self._running = True
        if isinstance(self.backend.clock, ManualClock):
            self.backend.clock.add_listener(self._clock_advanced)
        self._thread = threading.Thread(target=self._run, name="imagebuilder-events", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is due, then stop; events still delayed are not sent."""
        if self._thread is None:
            return
        if isinstance(self.backend.clock, ManualClock):
            self.backend.clock.remove_listener(self._clock_advanced)
        with self._wake:
            self._running = False
            self._wake.notify_all()
        self._thread.join(timeout)
        self._thread = None

    def _clock_advanced(self, now: float) -> None:
        self.scan()

    # ---------------------------------------------------------------- noticing changes
    def scan(self) -> int:
        """Report every status change due by the clock's now that was not reported yet; returns how many."""
        backend = self.backend
        changes: list[tuple[float, int, Build, str, str]] = []
        with backend.lock:
            now = backend.clock.now()
            builds = backend.builds
            with self._lock:
                if len(builds) > self._known_builds:
                    for arn in list(builds)[self._known_builds :]:
                        self._following[arn] = builds[arn].phases[0][0]
                    self._known_builds = len(builds)
                for order, (arn, reported) in enumerate(list(self._following.items())):
                    build = builds[arn]
                    status, _ = build.status(now)
                    if status == reported:
                        continue
                    walk = timeline(build)
                    statuses = [step[1] for step in walk]
                    if status not in statuses:
                        continue
                    first = statuses.index(reported) + 1 if reported in statuses else 1
                    for index in range(first, statuses.index(status) + 1):
                        changes.append((walk[index][0], order, build, statuses[index - 1], statuses[index]))
                    self._following[arn] = status
                    if status not in IN_PROGRESS_STATES:
                        del self._following[arn]
                changes.sort(key=lambda change: (change[0], change[1]))
                for begins, _order, build, previous, status in changes:
                    reason = build.describe(now)["state"].get("reason") if status not in IN_PROGRESS_STATES else None
                    self._decide(build, begins, previous, status, reason)
                if changes:
                    self._wake.notify_all()
        return len(changes)

    def _decide(self, build: Build, begins: float, previous: str, status: str, reason: str | None) -> None:
        """Journal one change and drop, delay or queue its event (caller holds the lock)."""
        when = build.wall_time(begins - build.created_at).astimezone(dt.timezone.utc)
        record = EventRecord(
            sequence=len(self._records),
            image_build_version_arn=build.arn,
            region=build.region,
            status=status,
            previous_status=previous,
            reason=reason,
            time=when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            outcome="pending",
            detail=state_change_detail(status, previous, reason),
        )
        self._records.append(record)
        dropped = self._drop_random.random() < self._drop_share
        delayed = self._delay_random.random() < self._delay_share and self._delay[1] > 0
        if dropped:
            record.outcome = "dropped"
            return
        if delayed:
            low, high = self._delay
            record.delay = low if low == high else self._delay_random.uniform(low, high)
            record.outcome = "delayed"
        heapq.heappush(self._queue, (time.monotonic() + record.delay, record.sequence))

    def _next_change_in(self) -> float | None:
        """Real seconds until the next phase of a followed build begins, on a real clock (None on a manual one)."""
        if isinstance(self.backend.clock, ManualClock):
            return None
        with self.backend.lock:
            now = self.backend.clock.now()
            with self._lock:
                builds = [self.backend.builds[arn] for arn in self._following]
            upcoming = [begins for build in builds for begins, _ in timeline(build) if begins > now]
        return min(upcoming) - now if upcoming else None

    # ---------------------------------------------------------------- sending
    def _run(self) -> None:
        while True:
            self.scan()
            self._send_due()
            waits = [self.poll_interval]
            next_change = self._next_change_in()
            if next_change is not None:
                waits.append(next_change)
            with self._wake:
                if not self._running:
                    return
                if self._queue:
                    waits.append(self._queue[0][0] - time.monotonic())
                self._wake.wait(max(0.0, min(waits)))
                if not self._running:
                    return

    def _send_due(self) -> None:
        with self._lock:
            now = time.monotonic()
            due: list[EventRecord] = []
            while self._queue and self._queue[0][0] <= now:
                due.append(self._records[heapq.heappop(self._queue)[1]])
            self._sending += len(due)
        try:
            start = 0
            while start < len(due):
                region = due[start].region
                batch = [due[start]]
                while (
                    start + len(batch) < len(due)
                    and len(batch) < PUT_EVENTS_BATCH
                    and due[start + len(batch)].region == region
                ):
                    batch.append(due[start + len(batch)])
                self._put(region, batch)
                start += len(batch)
        finally:
            with self._wake:
                self._sending -= len(due)
                self._wake.notify_all()

    def _put(self, region: str, batch: list[EventRecord]) -> None:
        try:
            if region not in self._clients:
                self._clients[region] = self._client_factory(self.endpoint_url, region)
            response = self._clients[region].put_events(Entries=[record.put_events_entry() for record in batch])
        except Exception as error:  # best effort: the journal says what went wrong
            with self._lock:
                for record in batch:
                    record.outcome, record.error = "failed", f"{type(error).__name__}: {error}"
            return
        with self._lock:
            for record, entry in zip(batch, response.get("Entries", []), strict=False):
                if "EventId" in entry:
                    record.outcome, record.event_id = "sent", entry["EventId"]
                else:
                    record.outcome = "failed"
                    record.error = f"{entry.get('ErrorCode')}: {entry.get('ErrorMessage')}"


def wire_events_to_queue(
    events_client: Any,
    sqs_client: Any,
    queue_name: str,
    rule_name: str | None = None,
    statuses: Sequence[str] | None = None,
) -> str:
    """Deliver Image Builder's state change events to an SQS queue, as a user's infrastructure code does.

    Creates the queue, an EventBridge rule on the default bus matching :data:`STATE_CHANGE_PATTERN`, the queue
    policy that lets EventBridge (``events.amazonaws.com``) send to the queue for that rule only, and the rule's
    target.  Returns the queue URL.  ``statuses``: deliver only the changes to these statuses (an event-driven wait
    acts only on the end of a build, so ``END_STATUSES`` spares the queue five of every six messages).
    """
    queue_url = str(sqs_client.create_queue(QueueName=queue_name)["QueueUrl"])
    queue_arn = sqs_client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    rule_name = rule_name or f"imagebuilder-state-change-{queue_name}"[:64]
    rule_arn = events_client.put_rule(
        Name=rule_name,
        EventPattern=json.dumps(state_change_pattern(statuses)),
        State="ENABLED",
        Description="EC2 Image Builder image state changes to SQS",
    )["RuleArn"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ImageBuilderStateChangeEvents",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
            }
        ],
    }
    sqs_client.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
    events_client.put_targets(Rule=rule_name, Targets=[{"Id": "imagebuilder-state-change-queue", "Arn": queue_arn}])
    return queue_url
