"""The wait for an image, decided in one place: the wait step, its messages and its outcomes.

:func:`next_step` is a pure function: fed what one poll saw (:class:`Poll`) and how long the wait has run, it
returns the :class:`Step` that follows.  The operator's sync wait, the sensor's ``poke`` and the trigger only do
I/O and sleep around it, so every mode ends a wait for the same reasons, with the same message.  A step that ends
a wait travels from the triggerer to the worker as an event (:meth:`Step.to_event` / :meth:`Step.from_event`)
and becomes exactly the exception the sync path raises (:meth:`Step.raise_for_outcome`).
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Callable, Mapping
from typing import Any

from airflow_imagebuilder._decisions.states import (
    DEFAULT_NOT_FOUND_GRACE,
    FAILURE_STATES,
    IN_PROGRESS_STATES,
    SUCCESS_STATES,
)
from airflow_imagebuilder.exceptions import (
    ImageBuilderApiError,
    ImageBuilderError,
    ImageBuilderRequestRejected,
    ImageBuildFailedError,
    ImageBuildTimeoutError,
    ImageNotFoundError,
    shorten,
)


@dataclasses.dataclass(frozen=True)
class ImageState:
    """The part of an image the wait is about."""

    status: str
    reason: str | None = None
    failure_context: str | None = None

    @classmethod
    def of(cls, image: Mapping[str, Any]) -> ImageState:
        state = image.get("state") or {}
        return cls(state.get("status", "UNKNOWN"), state.get("reason"), state.get("failureContext"))


class Outcome(enum.Enum):
    """What a wait step decided.  The values are the ``status`` of the trigger's events."""

    WAITING = "waiting"
    SUCCEEDED = "success"
    FAILED = "failure"
    TIMED_OUT = "timeout"
    NOT_FOUND = "not_found"
    #: The service rejected the call (authentication, permissions, a bad parameter, an unknown error code).
    REJECTED = "error"
    #: A call failed in a way waiting cannot mend but an Airflow retry may (a quota, expired credentials).
    API_ERROR = "api_error"

    @property
    def final(self) -> bool:
        return self is not Outcome.WAITING


@dataclasses.dataclass(frozen=True)
class Poll:
    """What one GetImage saw: the image, "not found" (neither field set), or an error that outlasted retries."""

    image: Mapping[str, Any] | None = None
    error: ImageBuilderApiError | None = None

    @classmethod
    def not_found(cls) -> Poll:
        return cls()


@dataclasses.dataclass(frozen=True)
class Step:
    """The decision of one wait step, and everything needed to act on it or to send it as an event."""

    outcome: Outcome
    image_build_version_arn: str
    state: ImageState | None = None
    outputs: dict[str, Any] | None = None
    message: str | None = None
    #: For REJECTED and API_ERROR: the failed call (operation, code, message, request_id, attempts, hint).
    error: dict[str, Any] | None = None

    def raise_for_outcome(self) -> dict[str, Any] | None:
        """Return the outputs of a success, None while waiting; raise the outcome's exception otherwise."""
        if self.outcome is Outcome.SUCCEEDED:
            return dict(self.outputs or {})
        if self.outcome is Outcome.WAITING:
            return None
        raise self.exception()

    def exception(self) -> ImageBuilderError:
        arn, message = self.image_build_version_arn, self.message or ""
        if self.outcome is Outcome.FAILED and self.state is not None:
            return ImageBuildFailedError(message, arn, self.state.status, self.state.reason)
        if self.outcome is Outcome.TIMED_OUT:
            return ImageBuildTimeoutError(message)
        if self.outcome is Outcome.NOT_FOUND:
            return ImageNotFoundError(message, hint=NOT_FOUND_HINT)
        if self.outcome in (Outcome.REJECTED, Outcome.API_ERROR) and self.error is not None:
            error_class = ImageBuilderRequestRejected if self.outcome is Outcome.REJECTED else ImageBuilderApiError
            return error_class(**self.error)
        return ImageBuilderError(f"No exception for wait outcome {self.outcome.value} of {arn}: {message}")

    def to_event(self) -> dict[str, Any]:
        """The trigger event payload (JSON-serializable)."""
        payload: dict[str, Any] = {
            "status": self.outcome.value,
            "image_build_version_arn": self.image_build_version_arn,
        }
        if self.state is not None:
            payload.update(
                image_status=self.state.status, reason=self.state.reason, failure_context=self.state.failure_context
            )
        for name in ("outputs", "message", "error"):
            if getattr(self, name) is not None:
                payload[name] = getattr(self, name)
        return payload

    @classmethod
    def from_event(cls, event: Mapping[str, Any] | None) -> Step:
        """The step a trigger event carries; a malformed event raises :class:`ImageBuilderError`."""
        if not event or "status" not in event or "image_build_version_arn" not in event:
            raise ImageBuilderError(f"Malformed event from ImageBuilderImageTrigger: {shorten(event)}")
        try:
            outcome = Outcome(event["status"])
        except ValueError:
            raise ImageBuilderError(
                f"Unknown status {event['status']!r} in event from ImageBuilderImageTrigger: {shorten(event)}"
            ) from None
        state = None
        if "image_status" in event:
            state = ImageState(event["image_status"], event.get("reason"), event.get("failure_context"))
        return cls(
            outcome=outcome,
            image_build_version_arn=str(event["image_build_version_arn"]),
            state=state,
            outputs=event.get("outputs"),
            message=event.get("message"),
            error=event.get("error"),
        )


NOT_FOUND_HINT = "Check the ARN, and that the connection's region and account are the image's."


def next_step(
    image_build_version_arn: str,
    poll: Poll,
    *,
    elapsed: float,
    attempt: int = 1,
    max_attempts: int | None = None,
    waiter_delay: float = 0,
    not_found_grace: float = DEFAULT_NOT_FOUND_GRACE,
) -> Step:
    """Decide what follows one poll of a wait that has run ``elapsed`` seconds and made ``attempt`` polls.

    A wait goes on through in-progress and unknown statuses, through errors the service clears by itself
    (``error.transient``), and through "not found" for ``not_found_grace`` seconds; when ``max_attempts``
    polls (None: no limit) saw nothing final, it times out.
    """
    arn = image_build_version_arn
    if poll.error is not None:
        error = poll.error
        if not error.transient:
            outcome = Outcome.REJECTED if isinstance(error, ImageBuilderRequestRejected) else Outcome.API_ERROR
            return Step(outcome, arn, message=str(error), error=error.fields())
    elif poll.image is None:
        if elapsed > not_found_grace:
            return Step(Outcome.NOT_FOUND, arn, message=not_found_message(arn, not_found_grace))
    else:
        state = ImageState.of(poll.image)
        if state.status in SUCCESS_STATES:
            return Step(Outcome.SUCCEEDED, arn, state, outputs=image_outputs(poll.image))
        if state.status in FAILURE_STATES:
            return Step(Outcome.FAILED, arn, state, message=failure_message(arn, state))
        if max_attempts is not None and attempt >= max_attempts:
            return Step(Outcome.TIMED_OUT, arn, state, message=timeout_message(arn, waiter_delay, max_attempts))
        return Step(Outcome.WAITING, arn, state)
    if max_attempts is not None and attempt >= max_attempts:
        return Step(Outcome.TIMED_OUT, arn, message=timeout_message(arn, waiter_delay, max_attempts))
    return Step(Outcome.WAITING, arn)


def with_cancel_note(step: Step, cancelled: bool | Exception | None) -> Step:
    """A timed-out step whose message says what became of the build.

    :param cancelled: True (cancelled), False (the service said it had already ended), None (not asked to
        cancel: ``cancel_on_kill=False``) or the error the cancel ended with.
    """
    if cancelled is None:
        note = "the build was left running (cancel_on_kill=False)"
    elif isinstance(cancelled, Exception):
        note = f"cancelling the build failed: {cancelled}"
    else:
        note = "the build was cancelled" if cancelled else "the build had already ended"
    return dataclasses.replace(step, message=f"{step.message}; {note}")


def failure_message(image_build_version_arn: str, state: ImageState) -> str:
    """The one message for a build that ended in a failure state (sync, sensor and deferrable paths)."""
    message = f"Image {image_build_version_arn} ended with status {state.status}"
    message += f": {state.reason}" if state.reason else " (the service gave no reason)"
    if state.failure_context:
        message += f" [failureContext: {state.failure_context}]"
    return message


def not_found_message(image_build_version_arn: str, not_found_grace: float) -> str:
    return (
        f"Image {image_build_version_arn} was still not found after more than {not_found_grace:.0f}s of waiting "
        "(a build the service just started becomes visible within seconds)"
    )


def timeout_message(image_build_version_arn: str, waiter_delay: float, waiter_max_attempts: int) -> str:
    return (
        f"Image {image_build_version_arn} did not become AVAILABLE within {waiter_max_attempts} polls "
        f"{waiter_delay}s apart"
    )


def image_outputs(image: Mapping[str, Any]) -> dict[str, Any]:
    """XCom outputs of an AVAILABLE image: AMIs (with regions), AMI ids per region, container URIs (flat and per
    region)."""
    resources = image.get("outputResources") or {}
    uris_by_region: dict[str, list[str]] = {}
    for container in resources.get("containers", []):
        if "region" in container:
            uris_by_region.setdefault(container["region"], []).extend(container.get("imageUris", []))
    amis = [
        {key: ami[key] for key in ("region", "image", "name", "accountId") if key in ami}
        for ami in resources.get("amis", [])
    ]
    return {
        "amis": amis,
        "ami_ids": {ami["region"]: ami["image"] for ami in amis if "region" in ami and "image" in ami},
        "container_image_uris": [
            uri for container in resources.get("containers", []) for uri in container.get("imageUris", [])
        ],
        "container_image_uris_by_region": uris_by_region,
    }


class TransitionLog:
    """Logs one line per status transition (with elapsed time) and one warning per unknown status.

    ``last_status`` is the status already logged for this wait (by the task, before it deferred), so a wait that
    moves from the worker to the triggerer logs each transition once.
    """

    def __init__(
        self,
        image_build_version_arn: str,
        log: Any,
        clock: Callable[[], float] = time.monotonic,
        *,
        last_status: str | None = None,
    ) -> None:
        self.arn = image_build_version_arn
        self.log = log
        self._clock = clock
        self._started = clock()
        self._last = last_status
        self._warned: set[str] = set()

    @property
    def last_status(self) -> str | None:
        """The status of the last line logged (None before the first)."""
        return self._last

    @property
    def elapsed(self) -> float:
        return self._clock() - self._started

    def record(self, step: Step, poll: Poll) -> Step:
        """Log what ``step`` shows that is new; return the step."""
        if step.state is not None and step.state.status != self._last:
            self.log.info("Image %s is %s (%.0fs elapsed)", self.arn, step.state.status, self.elapsed)
            self._last = step.state.status
            status = step.state.status
            known = IN_PROGRESS_STATES | SUCCESS_STATES | FAILURE_STATES
            if status not in known and status not in self._warned:
                self._warned.add(status)
                self.log.warning("Image %s has status %s, unknown to this provider; still waiting", self.arn, status)
        if poll.error is not None and step.outcome is Outcome.WAITING:
            self.log.warning("GetImage of %s failed, still waiting: %s", self.arn, poll.error)
        return step
