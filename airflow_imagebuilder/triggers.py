"""ImageBuilderImageTrigger: the deferrable wait for an image build, shared by the operator and the sensor."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import cached_property
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_imagebuilder.exceptions import ImageBuilderError
from airflow_imagebuilder.hooks import ON_KILL_CANCEL_SECONDS, ImageBuilderHook
from airflow_imagebuilder.waiting import DEFAULT_NOT_FOUND_GRACE, Outcome, Step, TransitionLog, next_step


class ImageBuilderImageTrigger(BaseTrigger):
    """
    Fire when an image build version reaches AVAILABLE or a failure state.

    Serializes only identifiers and settings; credentials are read through the Airflow connection when the
    trigger runs.  Each poll is decided by :func:`~airflow_imagebuilder.waiting.next_step`, as in the sync
    wait: throttling, 5xx and transport errors never end the wait; any other error ends it at once.  The event
    is :meth:`~airflow_imagebuilder.waiting.Step.to_event`; :func:`resolve_event` turns it back into the sync
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
    :param api_retry: fields of :class:`~airflow_imagebuilder.hooks.RetryPolicy` for retried API errors.
    :param not_found_grace: seconds during which "not found" is taken for eventual consistency.
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
    ) -> None:
        super().__init__()
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
            },
        )

    @cached_property
    def hook(self) -> ImageBuilderHook:
        return ImageBuilderHook(
            aws_conn_id=self.aws_conn_id,
            region_name=self.region_name,
            verify=self.verify,
            config=self.botocore_config,
            api_retry=self.api_retry,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        async with self.hook.client_lease():
            step = await self._wait()
        # Once a user killed the task (on_kill), fire nothing: a cleared task must start afresh, not resume
        # with the CANCELLED status its own kill caused.
        if not self._killed:
            yield TriggerEvent(step.to_event())

    async def _wait(self) -> Step:
        arn = self.image_build_version_arn
        transitions = TransitionLog(arn, self.log)
        attempt = 0
        while True:
            attempt += 1
            poll = await self.hook.poll_image_async(arn)
            step = next_step(
                arn,
                poll,
                elapsed=transitions.elapsed,
                attempt=attempt,
                max_attempts=self.waiter_max_attempts,
                waiter_delay=self.waiter_delay,
                not_found_grace=self.not_found_grace,
            )
            transitions.record(step, poll)
            if step.outcome is Outcome.TIMED_OUT:
                return await self.hook.cancel_after_timeout_async(step, self.cancel_on_kill)
            if step.outcome.final:
                return step
            await asyncio.sleep(self.waiter_delay)

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
