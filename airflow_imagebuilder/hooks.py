"""ImageBuilderHook: CreateImage, GetImage and CancelImageCreation with the provider's retry policy.

The sync path (operator, sensor) and the deferrable path (trigger) share everything defined here: the state
sets, how a status is read from an image, how an error is classified and retried, the failure message and the
outputs pushed to XCom.  botocore's standard and adaptive retry modes do not retry Image Builder's modeled
``CallRateLimitExceededException`` (HTTP 429), so the hook retries it itself, with the same client token.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import botocore.exceptions
from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from botocore.config import Config

from airflow_imagebuilder.exceptions import (
    ImageBuilderApiError,
    ImageBuilderRequestRejected,
    ImageBuildFailedError,
    ImageBuildTimeoutError,
)
from airflow_imagebuilder.models import CreateImageRequest

#: Statuses of a build that is still running.
IN_PROGRESS_STATES = frozenset({"PENDING", "CREATING", "BUILDING", "TESTING", "DISTRIBUTING", "INTEGRATING"})
#: The one status that means the image is ready.
SUCCESS_STATES = frozenset({"AVAILABLE"})
#: Statuses from which the image will never become AVAILABLE.
FAILURE_STATES = frozenset({"FAILED", "CANCELLED", "DEPRECATED", "DELETED", "DISABLED"})

#: What the hook does with each service error code: "retry" (backoff, same token, bounded),
#: "retry_briefly" (a few backed-off retries, then a retryable task failure), "fail_retryable" (a task failure
#: Airflow may retry) or "reject" (fail without Airflow retries).
ERROR_POLICY: dict[str, str] = {
    "CallRateLimitExceededException": "retry",
    "ServiceUnavailableException": "retry",
    "ServiceException": "retry",
    "ResourceInUseException": "retry_briefly",
    "ServiceQuotaExceededException": "fail_retryable",
    "IdempotentParameterMismatchException": "reject",
    "ClientException": "reject",
    "InvalidRequestException": "reject",
    "ForbiddenException": "reject",
    # Not in CreateImage's list, but any AWS endpoint can answer them; both are transient.
    "ThrottlingException": "retry",
    "ExpiredTokenException": "retry",
}
ERROR_HINTS: dict[str, str] = {
    "ServiceQuotaExceededException": (
        "An Image Builder quota (for example concurrent image builds per account and region) is exhausted; "
        "the task may succeed on a retry once other builds end, or raise the quota in Service Quotas."
    ),
    "IdempotentParameterMismatchException": (
        "The client token was already used for a CreateImage request with different parameters. Give a new "
        "client_token, or omit it to let the operator derive one from the task and the request."
    ),
    "ForbiddenException": (
        "Check the IAM permissions of the role or keys of the Airflow connection (imagebuilder:CreateImage, "
        "imagebuilder:GetImage, imagebuilder:CancelImageCreation, iam:PassRole) and the execution_role."
    ),
    "ResourceInUseException": "The resource is in use by another operation; the task may succeed on a retry.",
}
#: Transport failures: the request may or may not have reached the service, so it is re-sent with the same token.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    botocore.exceptions.HTTPClientError,  # connection reset/closed, read timeout
    botocore.exceptions.ConnectionError,  # endpoint unreachable, connect timeout
    asyncio.TimeoutError,
)
NOT_FOUND_CODES = frozenset({"ResourceNotFoundException"})
#: How the service refuses to cancel a build that already ended.
CANCEL_REFUSED_CODES = frozenset({"ResourceInUseException", "InvalidRequestException"})


def _cancel_request(image_build_version_arn: str) -> dict[str, Any]:
    """CancelImageCreation arguments with one client token for all retries of this cancel."""
    return {"imageBuildVersionArn": image_build_version_arn, "clientToken": str(uuid.uuid4())}


T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Backoff for retried API errors: delay ``min(max_delay, base_delay * 2**n)``, half of it jittered.

    Gives up after ``max_attempts`` calls or ``max_elapsed`` seconds, whichever comes first;
    ResourceInUseException gets at most ``in_use_attempts`` calls.
    """

    max_attempts: int = 12
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_elapsed: float = 600.0
    in_use_attempts: int = 4

    def delay(self, attempt: int) -> float:
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    @classmethod
    def from_value(cls, value: RetryPolicy | dict[str, Any] | None) -> RetryPolicy:
        if value is None:
            return cls()
        if isinstance(value, RetryPolicy):
            return value
        unknown = set(value) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(
                f"api_retry: unknown keys {sorted(unknown)}; known: max_attempts, base_delay, "
                "max_delay, max_elapsed, in_use_attempts"
            )
        return cls(**value)


@dataclasses.dataclass(frozen=True)
class ImageState:
    """The part of an image the wait is about."""

    status: str
    reason: str | None = None
    failure_context: str | None = None

    @classmethod
    def of(cls, image: dict[str, Any]) -> ImageState:
        state = image.get("state") or {}
        return cls(state.get("status", "UNKNOWN"), state.get("reason"), state.get("failureContext"))


def failure_message(image_build_version_arn: str, state: ImageState) -> str:
    """The one message for a build that ended in a failure state (sync, sensor and deferrable paths)."""
    message = f"Image {image_build_version_arn} ended with status {state.status}"
    message += f": {state.reason}" if state.reason else " (the service gave no reason)"
    if state.failure_context:
        message += f" [failureContext: {state.failure_context}]"
    return message


def image_outputs(image: dict[str, Any]) -> dict[str, Any]:
    """XCom outputs of an AVAILABLE image: AMIs (with regions), AMI ids per region, container URIs."""
    resources = image.get("outputResources") or {}
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
    }


def push_image_outputs(context: Any, image_build_version_arn: str, outputs: dict[str, Any], log: Any) -> None:
    """Push the outputs of an AVAILABLE image to XCom under their documented keys, and say what they are."""
    for key, value in outputs.items():
        context["ti"].xcom_push(key=key, value=value)
    log.info(
        "Image %s is AVAILABLE: AMIs %s, container images %s",
        image_build_version_arn,
        outputs["ami_ids"] or "none",
        outputs["container_image_uris"] or "none",
    )


class StatusTracker:
    """Logs one line per status transition (with elapsed time) and one warning per unknown status."""

    def __init__(self, image_build_version_arn: str, log: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self.arn = image_build_version_arn
        self.log = log
        self._clock = clock
        self._started = clock()
        self._last: str | None = None
        self._warned: set[str] = set()

    @property
    def elapsed(self) -> float:
        return self._clock() - self._started

    def observe(self, state: ImageState) -> str:
        """Record a status read; return "success", "failure" or "waiting"."""
        if state.status != self._last:
            self.log.info("Image %s is %s (%.0fs elapsed)", self.arn, state.status, self.elapsed)
            self._last = state.status
        if state.status in SUCCESS_STATES:
            return "success"
        if state.status in FAILURE_STATES:
            return "failure"
        if state.status not in IN_PROGRESS_STATES and state.status not in self._warned:
            self._warned.add(state.status)
            self.log.warning("Image %s has status %s, unknown to this provider; still waiting", self.arn, state.status)
        return "waiting"


def _error_details(error: botocore.exceptions.ClientError) -> tuple[str, str, str | None]:
    response = error.response
    code = response.get("Error", {}).get("Code", "Unknown")
    message = response.get("Error", {}).get("Message") or response.get("message") or str(error)
    request_id = response.get("ResponseMetadata", {}).get("RequestId")
    return code, message, request_id


def _give_up(operation: str, code: str, message: str, request_id: str | None, attempts: int) -> ImageBuilderApiError:
    action = ERROR_POLICY.get(code)
    error_class = ImageBuilderRequestRejected if action == "reject" else ImageBuilderApiError
    return error_class(operation, code, message, request_id, attempts, ERROR_HINTS.get(code, ""))


def _next_delay(policy: RetryPolicy, operation: str, error: BaseException, attempt: int, started: float) -> float:
    """Return how long to wait before the next attempt, or raise the error the caller should see."""
    if isinstance(error, botocore.exceptions.ClientError):
        code, message, request_id = _error_details(error)
        action = ERROR_POLICY.get(code, "reject" if code not in NOT_FOUND_CODES else "not_found")
        limit = policy.in_use_attempts if action == "retry_briefly" else policy.max_attempts
        if action not in ("retry", "retry_briefly"):
            raise _give_up(operation, code, message, request_id, attempt) from error
    elif isinstance(error, TRANSPORT_ERRORS):
        code, message, request_id, limit = type(error).__name__, str(error) or repr(error), None, policy.max_attempts
    else:
        raise error
    delay = policy.delay(attempt)
    if attempt >= limit or time.monotonic() - started + delay > policy.max_elapsed:
        raise _give_up(operation, code, message, request_id, attempt) from error
    return delay


class ImageBuilderHook(AwsBaseHook):
    """Interact with AWS EC2 Image Builder through boto3 (and aiobotocore for triggers).

    Additional arguments (such as ``aws_conn_id``, ``region_name``, ``verify``, ``config``) are passed down to
    :class:`~airflow.providers.amazon.aws.hooks.base_aws.AwsBaseHook`.

    :param api_retry: the :class:`RetryPolicy` (or its fields as a dict) for retried API errors.
    """

    IN_PROGRESS_STATES = IN_PROGRESS_STATES
    SUCCESS_STATES = SUCCESS_STATES
    FAILURE_STATES = FAILURE_STATES

    def __init__(self, *args: Any, api_retry: RetryPolicy | dict[str, Any] | None = None, **kwargs: Any) -> None:
        kwargs["client_type"] = "imagebuilder"
        super().__init__(*args, **kwargs)
        self.retry_policy = RetryPolicy.from_value(api_retry)

    def _get_config(self, config: Config | None = None) -> Config:
        """Leave retries to :meth:`_call` unless the user configured botocore's own.

        One retry loop (ours) keeps the error table's behaviour, the backoff bound and the attempt count in
        messages exact; botocore's legacy mode would otherwise retry the 429 with its own multi-second backoff
        and its standard mode would not retry it at all.
        """
        merged = super()._get_config(config)
        if "retries" not in getattr(merged, "_user_provided_options", {}):
            merged = merged.merge(Config(retries={"mode": "standard", "total_max_attempts": 1}))
        return merged

    # ------------------------------------------------------------------------------------------ sync
    def _call(self, operation: str, function: Callable[..., T], **kwargs: Any) -> T:
        started, attempt = time.monotonic(), 0
        while True:
            attempt += 1
            try:
                return function(**kwargs)
            except (botocore.exceptions.ClientError, *TRANSPORT_ERRORS) as error:
                delay = _next_delay(self.retry_policy, operation, error, attempt, started)
                self.log.warning("%s attempt %d failed (%s); retrying in %.1fs", operation, attempt, error, delay)
                time.sleep(delay)

    def create_image(self, request: CreateImageRequest) -> dict[str, Any]:
        """Call CreateImage (retried with the request's client token) and return the response."""
        return self._call("CreateImage", self.conn.create_image, **request.to_api())

    def get_image(self, image_build_version_arn: str) -> dict[str, Any]:
        """Return the ``image`` member of GetImage."""
        return self._call("GetImage", self.conn.get_image, imageBuildVersionArn=image_build_version_arn)["image"]

    def find_image(self, image_build_version_arn: str) -> dict[str, Any] | None:
        """Like :meth:`get_image`, but ``None`` while the service does not know the image yet."""
        try:
            return self.get_image(image_build_version_arn)
        except ImageBuilderApiError as error:
            if error.code in NOT_FOUND_CODES:
                return None
            raise

    def get_image_state(self, image_build_version_arn: str) -> ImageState:
        return ImageState.of(self.get_image(image_build_version_arn))

    def cancel_image_creation(self, image_build_version_arn: str) -> bool:
        """Cancel a build; return False (and log why) when the service refuses because it already ended."""
        try:
            self._call(
                "CancelImageCreation", self.conn.cancel_image_creation, **_cancel_request(image_build_version_arn)
            )
        except ImageBuilderApiError as error:
            return self._cancel_refused(image_build_version_arn, error)
        self.log.info("Cancelled image creation of %s", image_build_version_arn)
        return True

    def _cancel_refused(self, image_build_version_arn: str, error: ImageBuilderApiError) -> bool:
        if error.code not in CANCEL_REFUSED_CODES:
            raise error
        self.log.warning("Could not cancel image %s: %s", image_build_version_arn, error)
        return False

    def wait_for_image(
        self,
        image_build_version_arn: str,
        *,
        waiter_delay: float = 60,
        waiter_max_attempts: int = 720,
        not_found_grace: float = 120.0,
        known_image: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Poll until the image is AVAILABLE and return it.

        Logs one line per status transition.  Raises :class:`ImageBuildFailedError` on a failure state and
        :class:`ImageBuildTimeoutError` (after cancelling the build) when ``waiter_max_attempts`` polls pass.
        ``known_image`` is the image as the caller just read it; it stands in for the first poll.
        """
        tracker = StatusTracker(image_build_version_arn, self.log)
        image = known_image
        for attempt in range(1, waiter_max_attempts + 1):
            if attempt > 1 or image is None:
                try:
                    image = self.find_image(image_build_version_arn)
                except ImageBuilderRequestRejected:
                    raise
                except ImageBuilderApiError as error:
                    # As in the trigger: throttling, 5xx and transport errors outlasting the retries never end
                    # the wait; the next poll tries again.
                    self.log.warning("GetImage of %s failed, still waiting: %s", image_build_version_arn, error)
                    image = {}
            if image is None:
                if tracker.elapsed > not_found_grace:
                    raise ImageBuilderApiError(
                        "GetImage",
                        "ResourceNotFoundException",
                        not_found_message(image_build_version_arn, tracker.elapsed),
                    )
            elif image:
                state = ImageState.of(image)
                outcome = tracker.observe(state)
                if outcome == "success":
                    return image
                if outcome == "failure":
                    raise ImageBuildFailedError(
                        failure_message(image_build_version_arn, state),
                        image_build_version_arn,
                        state.status,
                        state.reason,
                    )
            if attempt < waiter_max_attempts:
                time.sleep(waiter_delay)
        self.cancel_image_creation(image_build_version_arn)
        raise ImageBuildTimeoutError(timeout_message(image_build_version_arn, waiter_delay, waiter_max_attempts))

    # ------------------------------------------------------------------------------------------ async
    async def _call_async(self, operation: str, function: Callable[..., Awaitable[T]], **kwargs: Any) -> T:
        started, attempt = time.monotonic(), 0
        while True:
            attempt += 1
            try:
                return await function(**kwargs)
            except (botocore.exceptions.ClientError, *TRANSPORT_ERRORS) as error:
                delay = _next_delay(self.retry_policy, operation, error, attempt, started)
                self.log.warning("%s attempt %d failed (%s); retrying in %.1fs", operation, attempt, error, delay)
                await asyncio.sleep(delay)

    async def shared_async_client(self) -> Any:
        """An aiobotocore client shared by every hook of this event loop with the same connection settings.

        One client per (connection, region, endpoint, verify, botocore config) instead of one per trigger per
        poll: at fleet scale this is what keeps the triggerer's CPU and memory flat.  Credentials come from the
        connection's session, whose refreshable credentials outlive any single role session.
        """
        return await _SHARED_CLIENTS.get(self)

    async def find_image_async(self, image_build_version_arn: str) -> dict[str, Any] | None:
        client = await self.shared_async_client()
        try:
            response = await self._call_async(
                "GetImage", client.get_image, imageBuildVersionArn=image_build_version_arn
            )
        except ImageBuilderApiError as error:
            if error.code in NOT_FOUND_CODES:
                return None
            raise
        return response["image"]

    async def cancel_image_creation_async(self, image_build_version_arn: str) -> bool:
        client = await self.shared_async_client()
        try:
            await self._call_async(
                "CancelImageCreation", client.cancel_image_creation, **_cancel_request(image_build_version_arn)
            )
        except ImageBuilderApiError as error:
            return self._cancel_refused(image_build_version_arn, error)
        self.log.info("Cancelled image creation of %s", image_build_version_arn)
        return True


def not_found_message(image_build_version_arn: str, elapsed: float) -> str:
    return f"Image {image_build_version_arn} is still not found {elapsed:.0f}s after it was created"


def timeout_message(image_build_version_arn: str, waiter_delay: float, waiter_max_attempts: int) -> str:
    return (
        f"Image {image_build_version_arn} did not become AVAILABLE within {waiter_max_attempts} polls "
        f"{waiter_delay}s apart; the build was cancelled"
    )


class _SharedClients:
    """Per event loop cache of entered aiobotocore clients, keyed by the hook's connection settings."""

    def __init__(self) -> None:
        self._clients: dict[tuple[Any, ...], Any] = {}
        self._locks: dict[tuple[Any, ...], asyncio.Lock] = {}

    @staticmethod
    def key(hook: ImageBuilderHook) -> tuple[Any, ...]:
        return (
            id(asyncio.get_running_loop()),
            hook.aws_conn_id,
            hook._region_name,
            str(hook._verify),
            json.dumps(getattr(hook._config, "_user_provided_options", {}), sort_keys=True, default=str),
        )

    async def get(self, hook: ImageBuilderHook) -> Any:
        key = self.key(hook)
        client = self._clients.get(key)
        if client is not None:
            return client
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key not in self._clients:
                context = await hook.get_async_conn()
                self._clients[key] = await context.__aenter__()
            return self._clients[key]

    async def close_all(self) -> None:
        """Close every client of the running loop (tests and benchmarks call this between loops)."""
        loop_id = id(asyncio.get_running_loop())
        for key in [key for key in self._clients if key[0] == loop_id]:
            await self._clients.pop(key).__aexit__(None, None, None)
            self._locks.pop(key, None)


_SHARED_CLIENTS = _SharedClients()
