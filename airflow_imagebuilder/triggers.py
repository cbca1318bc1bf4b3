"""ImageBuilderImageTrigger: the deferrable wait for an image build, shared by the operator and the sensor."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import cached_property
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_imagebuilder.exceptions import (
    ImageBuilderApiError,
    ImageBuilderError,
    ImageBuilderRequestRejected,
    ImageBuildFailedError,
    ImageBuildTimeoutError,
)
from airflow_imagebuilder.hooks import (
    ImageBuilderHook,
    ImageState,
    StatusTracker,
    failure_message,
    image_outputs,
    not_found_message,
    timeout_message,
)


class ImageBuilderImageTrigger(BaseTrigger):
    """
    Fire when an image build version reaches AVAILABLE or a failure state.

    Serializes only identifiers and settings; credentials are read through the Airflow connection when the
    trigger runs.  API throttling, 5xx and transport errors during the wait are retried and never end it.

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
        not_found_grace: float = 120.0,
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

    def _event(self, status: str, state: ImageState | None = None, **extra: Any) -> TriggerEvent:
        payload: dict[str, Any] = {"status": status, "image_build_version_arn": self.image_build_version_arn}
        if state is not None:
            payload.update(image_status=state.status, reason=state.reason, failure_context=state.failure_context)
        return TriggerEvent(payload | extra)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        async for event in self._wait():
            # Once a user killed the task (on_kill), fire nothing: a cleared task must start afresh, not resume
            # with the CANCELLED status its own kill caused.
            if not self._killed:
                yield event
            return

    async def _wait(self) -> AsyncIterator[TriggerEvent]:
        tracker = StatusTracker(self.image_build_version_arn, self.log)
        for attempt in range(1, self.waiter_max_attempts + 1):
            try:
                image = await self.hook.find_image_async(self.image_build_version_arn)
            except ImageBuilderRequestRejected as error:
                yield self._event("error", message=str(error), code=error.code)
                return
            except ImageBuilderApiError as error:
                # Throttling, 5xx and transport errors outlasting the hook's retries: keep waiting.
                self.log.warning("GetImage of %s failed, still waiting: %s", self.image_build_version_arn, error)
                image = {}
            if image is None and tracker.elapsed > self.not_found_grace:
                yield self._event(
                    "error",
                    code="ResourceNotFoundException",
                    message=not_found_message(self.image_build_version_arn, tracker.elapsed),
                )
                return
            if image:
                state = ImageState.of(image)
                outcome = tracker.observe(state)
                if outcome == "success":
                    yield self._event("success", state, outputs=image_outputs(image))
                    return
                if outcome == "failure":
                    yield self._event("failure", state, message=failure_message(self.image_build_version_arn, state))
                    return
            if attempt < self.waiter_max_attempts:
                await asyncio.sleep(self.waiter_delay)
        if self.cancel_on_kill:
            await self.hook.cancel_image_creation_async(self.image_build_version_arn)
        yield self._event(
            "timeout",
            message=timeout_message(self.image_build_version_arn, self.waiter_delay, self.waiter_max_attempts),
        )

    async def on_kill(self) -> None:
        """Cancel the build when a user marks the deferred task failed or clears it (Airflow 3.3+)."""
        self._killed = True
        if self.cancel_on_kill:
            await self.hook.cancel_image_creation_async(self.image_build_version_arn)


def resolve_event(event: dict[str, Any] | None) -> dict[str, Any]:
    """Turn a trigger event back into the sync path's result: the outputs, or the same exception it raises."""
    if not event or "status" not in event or "image_build_version_arn" not in event:
        raise ImageBuilderError(f"Malformed event from ImageBuilderImageTrigger: {event!r}")
    arn, status = event["image_build_version_arn"], event["status"]
    if status == "success":
        return dict(event["outputs"])
    if status == "failure":
        raise ImageBuildFailedError(event["message"], arn, event["image_status"], event.get("reason"))
    if status == "timeout":
        raise ImageBuildTimeoutError(event["message"])
    if status == "error" and event.get("code") == "ResourceNotFoundException":
        raise ImageBuilderError(event["message"])
    if status == "error":
        raise AirflowFailException(event["message"])
    raise ImageBuilderError(f"Unknown status {status!r} in event from ImageBuilderImageTrigger: {event!r}")
