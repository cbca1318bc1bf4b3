"""ImageBuilderImageTrigger: the deferrable wait for an image build, shared by the operator and the sensor."""

from __future__ import annotations

import asyncio
import collections
import fnmatch
from collections.abc import AsyncIterator, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseEventTrigger, BaseTrigger, TriggerEvent

from airflow_imagebuilder._decisions.states import DEFAULT_NOT_FOUND_GRACE, DEFAULT_SAFETY_POLL_INTERVAL
from airflow_imagebuilder._decisions.waiting import (
    Outcome,
    Poll,
    Step,
    TransitionLog,
    image_outputs,
    next_step,
)
from airflow_imagebuilder.exceptions import ImageBuilderError
from airflow_imagebuilder.hooks import ON_KILL_CANCEL_SECONDS, ImageBuilderHook

if TYPE_CHECKING:
    from airflow_imagebuilder._adapters.sqs import StateChange


__all__ = [
    "ImageBuilderImageEventTrigger",
    "ImageBuilderImageTrigger",
]

#: State changes an event trigger remembers having fired for (duplicates of them fire nothing).
FIRED_REMEMBERED = 10_000


class _HookFromSettings:
    """The :class:`ImageBuilderHook` of a trigger's connection settings, built when the trigger runs."""

    aws_conn_id: str | None
    region_name: str | None
    verify: bool | str | None
    botocore_config: dict[str, Any] | None
    api_retry: dict[str, Any] | None

    @cached_property
    def hook(self) -> ImageBuilderHook:
        return ImageBuilderHook(
            aws_conn_id=self.aws_conn_id,
            region_name=self.region_name,
            verify=self.verify,
            config=self.botocore_config,
            api_retry=self.api_retry,
        )


class ImageBuilderImageTrigger(_HookFromSettings, BaseTrigger):
    """
    Fire when an image build version reaches AVAILABLE or a failure state.

    Serializes only identifiers and settings; credentials are read through the Airflow connection when the
    trigger runs.  Each poll is decided by :func:`~airflow_imagebuilder._decisions.waiting.next_step`, as in the sync
    wait: throttling, 5xx and transport errors never end the wait; any other error ends it at once.  The event
    is :meth:`~airflow_imagebuilder._decisions.waiting.Step.to_event`; :func:`resolve_event` turns it back into the sync
    path's result or exception.

    :param image_build_version_arn: the image build version to follow.
    :param waiter_delay: seconds between two GetImage calls.
    :param waiter_max_attempts: GetImage calls before the wait times out (and the build is cancelled).
    :param aws_conn_id: the Airflow connection used for AWS credentials.
    :param region_name: the AWS region of the image.
    :param verify: whether or not to verify SSL certificates.
    :param botocore_config: configuration dictionary for the botocore client.
    :param cancel_on_kill: send CancelImageCreation when the deferred task is killed by a user (Airflow 3.3+)
        and when the wait times out.
    :param api_retry: fields of :class:`~airflow_imagebuilder._decisions.retry.RetryPolicy` for retried API errors.
    :param not_found_grace: seconds during which "not found" is taken for eventual consistency.
    :param completion_queue_url: an SQS queue receiving Image Builder's state change events (through an
        EventBridge rule). The wait then learns the outcome from the queue: one GetImage at the start, one to
        confirm a final status (outputs always come from GetImage), and a safety GetImage every
        ``safety_poll_interval`` seconds in case an event is lost.  None (default): poll every ``waiter_delay``.
    :param safety_poll_interval: seconds between two safety polls of an event-driven wait (default 600).
    :param last_status: the status the task logged before it deferred: logged again only when it changes.
    """

    def __init__(
        self,
        *,
        image_build_version_arn: str,
        waiter_delay: float = 30,
        waiter_max_attempts: int = 1440,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        cancel_on_kill: bool = True,
        api_retry: dict[str, Any] | None = None,
        not_found_grace: float = DEFAULT_NOT_FOUND_GRACE,
        completion_queue_url: str | None = None,
        safety_poll_interval: float = DEFAULT_SAFETY_POLL_INTERVAL,
        last_status: str | None = None,
    ) -> None:
        super().__init__()
        self.last_status = last_status
        self.image_build_version_arn = image_build_version_arn
        self.waiter_delay = waiter_delay
        self.waiter_max_attempts = waiter_max_attempts
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config
        self.cancel_on_kill = cancel_on_kill
        self.api_retry = api_retry
        self.not_found_grace = not_found_grace
        self.completion_queue_url = completion_queue_url
        self.safety_poll_interval = safety_poll_interval
        self._killed = False  # set by on_kill; not serialized

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "image_build_version_arn": self.image_build_version_arn,
                "waiter_delay": self.waiter_delay,
                "waiter_max_attempts": self.waiter_max_attempts,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "verify": self.verify,
                "botocore_config": self.botocore_config,
                "cancel_on_kill": self.cancel_on_kill,
                "api_retry": self.api_retry,
                "not_found_grace": self.not_found_grace,
                "completion_queue_url": self.completion_queue_url,
                "safety_poll_interval": self.safety_poll_interval,
                "last_status": self.last_status,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        async with self.hook.client_lease():
            step = await self._wait()
        # Once a user killed the task (on_kill), fire nothing: a cleared task must start afresh, not resume
        # with the CANCELLED status its own kill caused.
        if not self._killed:
            yield TriggerEvent(step.to_event())

    def _decide(self, poll: Poll, transitions: TransitionLog, attempt: int) -> Step:
        step = next_step(
            self.image_build_version_arn,
            poll,
            elapsed=transitions.elapsed,
            attempt=attempt,
            max_attempts=self.waiter_max_attempts,
            waiter_delay=self.waiter_delay,
            not_found_grace=self.not_found_grace,
        )
        return transitions.record(step, poll)

    async def _final(self, step: Step) -> Step | None:
        """The step to fire (a timed-out build cancelled first, unless told not to), or None to go on waiting."""
        if step.outcome is Outcome.TIMED_OUT:
            return await self.hook.cancel_after_timeout_async(step, self.cancel_on_kill)
        return step if step.outcome.final else None

    async def _wait(self) -> Step:
        if self.completion_queue_url:
            return await self._wait_for_events(self.completion_queue_url)
        transitions = TransitionLog(self.image_build_version_arn, self.log, last_status=self.last_status)
        attempt = 0
        while True:
            attempt += 1
            poll = await self.hook.poll_image_async(self.image_build_version_arn)
            if final := await self._final(self._decide(poll, transitions, attempt)):
                return final
            await asyncio.sleep(self.waiter_delay)

    async def _wait_for_events(self, queue_url: str) -> Step:
        """Wait on the shared queue consumer; GetImage at the start, to confirm, and as a safety net."""
        from airflow_imagebuilder._adapters.sqs import CONSUMERS

        arn = self.image_build_version_arn
        consumer = CONSUMERS.get(queue_url, self.aws_conn_id, self.region_name, self.verify, self.botocore_config)
        transitions = TransitionLog(arn, self.log, last_status=self.last_status)
        deadline = self.waiter_delay * self.waiter_max_attempts
        poll = await self.hook.poll_image_async(arn)
        # Events name the build version: follow the ARN GetImage answers (an image version ARN names its newest
        # build).  An event sent before the subscription comes back: the consumer leaves it for its wait.
        followed = str(poll.image.get("arn") or arn) if poll.image is not None else arn
        async with consumer.subscription(followed) as inbox:
            received: list[StateChange] = []
            while True:
                timed_out = transitions.elapsed >= deadline
                step = self._decide(poll, transitions, self.waiter_max_attempts if timed_out else 1)
                if final := await self._final(step):
                    for change in received:  # the outcome is known: the end events have served their purpose
                        await consumer.delete(change)
                    return final
                # Poll again soon while the image is not visible yet or an event announced an end GetImage
                # does not show yet; otherwise only when an event says the build ended, or for safety.
                confirming = poll.image is None or bool(received)
                timeout = self.waiter_delay if confirming else self.safety_poll_interval
                until = transitions.elapsed + max(0.0, min(timeout, deadline - transitions.elapsed))
                while (remaining := until - transitions.elapsed) > 0:
                    try:
                        change = await asyncio.wait_for(inbox.get(), timeout=remaining)
                    except asyncio.TimeoutError:
                        break  # safety (or confirmation) poll
                    received.append(change)  # the consumer routes only the ends of builds
                    break  # the build ended, says the event: confirm with GetImage
                poll = await self.hook.poll_image_async(arn)

    async def on_kill(self) -> None:
        """Cancel the build when a user marks the deferred task failed or clears it (Airflow 3.3+).

        Bounded to fit the triggerer's ``on_kill`` time; a failed cancel is logged, never raised.
        """
        self._killed = True
        if not self.cancel_on_kill:
            return
        try:
            await asyncio.wait_for(
                self.hook.cancel_image_creation_async(self.image_build_version_arn, deadline=ON_KILL_CANCEL_SECONDS),
                timeout=ON_KILL_CANCEL_SECONDS + 5,
            )
        except (ImageBuilderError, asyncio.TimeoutError) as error:
            self.log.warning("Could not cancel image %s on kill: %s", self.image_build_version_arn, error)


def resolve_event(event: dict[str, Any] | None, hook: ImageBuilderHook | None = None) -> dict[str, Any]:
    """Turn a trigger event back into the sync path's result: the outputs, or the very exception it raises.

    With ``hook`` (in the worker), a failed build's message gets the same details the sync path adds.
    """
    step = Step.from_event(event)
    if step.outcome is Outcome.WAITING:
        raise ImageBuilderError(f"ImageBuilderImageTrigger fired without an outcome: {event!r}")
    outputs = hook.conclude(step) if hook is not None else step.raise_for_outcome()
    return outputs or {}


class ImageBuilderImageEventTrigger(_HookFromSettings, BaseEventTrigger):
    """
    Fire once per Image Builder state change event in an SQS queue that matches: for ``AssetWatcher``.

    Reads "EC2 Image Builder Image State Change" events (delivered to the queue by an EventBridge rule), keeps
    those whose status is in ``statuses`` and whose image matches the filters, and fires an event carrying the
    image build version ARN, the status, the AMIs per region and container URIs (from one GetImage), and the
    source pipeline.  Give the watcher a queue of its own: the messages it does not fire for are deleted too.
    Messages that are not Image Builder events are logged once and left to the queue's redrive policy.

    :param queue_url: the SQS queue the EventBridge rule delivers to.
    :param statuses: the statuses to fire for (default ``("AVAILABLE",)``).
    :param image_pipeline_arn: fire only for images built by this pipeline.
    :param recipe_name: fire only for images of this image (or container) recipe name.
    :param image_name_pattern: fire only for images whose name matches this ``fnmatch`` pattern.
    :param aws_conn_id: the Airflow connection used for AWS credentials (SQS and Image Builder).
    :param region_name: the AWS region.
    :param verify: whether or not to verify SSL certificates.
    :param botocore_config: configuration dictionary for the botocore clients.
    :param api_retry: fields of :class:`~airflow_imagebuilder._decisions.retry.RetryPolicy` for the GetImage calls.
    """

    def __init__(
        self,
        *,
        queue_url: str,
        statuses: Sequence[str] = ("AVAILABLE",),
        image_pipeline_arn: str | None = None,
        recipe_name: str | None = None,
        image_name_pattern: str | None = None,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        api_retry: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.queue_url = queue_url
        self.statuses = list(statuses)
        self.image_pipeline_arn = image_pipeline_arn
        self.recipe_name = recipe_name
        self.image_name_pattern = image_name_pattern
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config
        self.api_retry = api_retry

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "queue_url": self.queue_url,
                "statuses": self.statuses,
                "image_pipeline_arn": self.image_pipeline_arn,
                "recipe_name": self.recipe_name,
                "image_name_pattern": self.image_name_pattern,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "verify": self.verify,
                "botocore_config": self.botocore_config,
                "api_retry": self.api_retry,
            },
        )

    def matches(self, image: dict[str, Any]) -> bool:
        """True when an image passes the pipeline, recipe and name filters."""
        recipe = image.get("imageRecipe") or image.get("containerRecipe") or {}
        return (
            (self.image_pipeline_arn is None or image.get("sourcePipelineArn") == self.image_pipeline_arn)
            and (self.recipe_name is None or recipe.get("name") == self.recipe_name)
            and (
                self.image_name_pattern is None or fnmatch.fnmatchcase(str(image.get("name")), self.image_name_pattern)
            )
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_imagebuilder._adapters.sqs import QueueReader

        reader = QueueReader(
            self.queue_url, self.aws_conn_id, self.region_name, self.verify, self.botocore_config, log=self.log
        )
        fired: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()
        try:
            async with self.hook.client_lease():
                while True:
                    done: list[StateChange] = []
                    for change in await reader.receive():
                        seen = (change.image_build_version_arn, change.status)
                        if change.status in self.statuses and seen not in fired:
                            try:
                                image = await self.hook.find_image_async(change.image_build_version_arn)
                            except ImageBuilderError as error:
                                self.log.warning("GetImage of %s failed: %s", change.image_build_version_arn, error)
                                continue  # the message comes back after its visibility timeout
                            if image is None:
                                continue  # not visible yet: the message comes back after its visibility timeout
                            if self.matches(image):
                                self.log.info("Image %s is %s: firing", change.image_build_version_arn, change.status)
                                fired[seen] = None  # EventBridge delivers at least once: one run per change
                                while len(fired) > FIRED_REMEMBERED:
                                    fired.popitem(last=False)
                                yield self._event(change.status, change.reason, image)
                        done.append(change)  # fired, another status, or filtered out: this watcher is done with it
                    await reader.delete(done)
        finally:
            await reader.close()

    @staticmethod
    def _event(status: str, reason: str | None, image: dict[str, Any]) -> TriggerEvent:
        recipe = image.get("imageRecipe") or image.get("containerRecipe") or {}
        return TriggerEvent(
            {
                "image_build_version_arn": image.get("arn"),
                "status": status,
                "reason": reason,
                "image_name": image.get("name"),
                "recipe_name": recipe.get("name"),
                "source_pipeline_arn": image.get("sourcePipelineArn"),
                **image_outputs(image),
            }
        )
