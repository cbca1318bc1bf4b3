"""Exceptions raised by the provider.

Which Image Builder error becomes which exception is decided in one place, :func:`~.retry.classify` in
``retry.py``; which wait outcome becomes which exception in one other, :meth:`~.waiting.Step.exception`.  This
module only defines the types and their messages.

* :class:`ImageBuilderRequestRejected` and :class:`InvalidCreateImageRequest` subclass ``AirflowFailException``:
  the task fails without Airflow retries, because a retry would send the same rejected request again.
* Every other class here is a plain exception, so Airflow's ``retries`` apply.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException

__all__ = [
    "ImageBuildFailedError",
    "ImageBuildTimeoutError",
    "ImageBuilderApiError",
    "ImageBuilderError",
    "ImageBuilderRequestRejected",
    "ImageNotFoundError",
    "ImagePipelineDisabledError",
    "ImageScanFailedError",
    "ImageScanFindingsError",
    "ImageScanIncompleteError",
    "ImageScanningNotEnabledError",
    "InvalidCreateImageRequest",
]


def shorten(value: Any, limit: int = 120) -> str:
    """``repr(value)``, cut in the middle past ``limit`` characters, for error messages."""
    text = repr(value)
    if len(text) <= limit:
        return text
    keep = (limit - 25) // 2
    return f"{text[:keep]}...<{len(text) - 2 * keep} chars>...{text[-keep:]}"


class ImageBuilderError(Exception):
    """Base class of the provider's own errors (all but validation and rejected requests are retryable)."""


class ImageBuilderApiError(ImageBuilderError):
    """An Image Builder API call failed with a service error or a transport error.

    :param operation: the API operation, e.g. ``CreateImage``.
    :param code: the service's error code (``x-amzn-ErrorType``), or the transport error's class name.
    :param message: the service's message, verbatim.
    :param request_id: the service's request id, when there was a response.
    :param attempts: how many calls were made before giving up.
    :param hint: what the user can do about it.
    :param transient: the service clears this error by itself (throttling, 5xx, no answer): a wait goes on.
    """

    def __init__(
        self,
        operation: str,
        code: str,
        message: str,
        request_id: str | None = None,
        attempts: int = 1,
        hint: str = "",
        transient: bool = False,
    ) -> None:
        self.operation = operation
        self.code = code
        self.service_message = message
        self.request_id = request_id
        self.attempts = attempts
        self.hint = hint
        self.transient = transient
        text = f"{operation} failed with {code}: {message}"
        if request_id:
            text += f" (request id {request_id})"
        text += f" after {attempts} attempt{'s' if attempts != 1 else ''}." if attempts else "."
        if hint:
            text += f" {hint}"
        super().__init__(text)

    def fields(self) -> dict[str, Any]:
        """The constructor's arguments: the same error rebuilt from them has the same message."""
        return {
            "operation": self.operation,
            "code": self.code,
            "message": self.service_message,
            "request_id": self.request_id,
            "attempts": self.attempts,
            "hint": self.hint,
            "transient": self.transient,
        }


class ImageBuilderRequestRejected(ImageBuilderApiError, AirflowFailException):
    """The service rejected the request itself; retrying the task cannot help, so Airflow does not retry."""


class ImageNotFoundError(ImageBuilderApiError):
    """GetImage kept answering ResourceNotFoundException for longer than a new build takes to become visible.

    Retryable, like the API errors it stands for: a task retry follows the same build again.
    """

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__("GetImage", "ResourceNotFoundException", message, attempts=0, hint=hint)


class ImagePipelineDisabledError(ImageBuilderError, AirflowFailException):
    """The image pipeline is DISABLED: no execution was started, and a retry would find it disabled again."""


class ImageScanFindingsError(ImageBuilderError, AirflowFailException):
    """The image is AVAILABLE but its scan found something more severe than ``max_finding_severity`` allows.

    Not retryable: the same image would be judged again.
    """

    def __init__(self, message: str, image_build_version_arn: str, counts: dict[str, int]) -> None:
        super().__init__(message)
        self.image_build_version_arn = image_build_version_arn
        self.counts = counts


class ImageScanIncompleteError(ImageBuilderError):
    """A scan-findings gate cannot judge the image yet: its scan is still running.  Retryable: a retry reuses
    the AVAILABLE image and judges it again."""


class ImageScanFailedError(ImageBuilderError, AirflowFailException):
    """A scan-findings gate cannot judge the image: its scan failed, timed out or was abandoned."""


class ImageScanningNotEnabledError(ImageBuilderError, ValueError, AirflowFailException):
    """A scan-findings gate (``max_finding_severity``) is set, but the build does not scan its image."""


class ImageBuildFailedError(ImageBuilderError):
    """The image reached a failure state (FAILED, CANCELLED, DEPRECATED, DELETED, DISABLED).

    Retryable: a task retry derives the next client token and starts a new build.
    """

    def __init__(self, message: str, image_build_version_arn: str, status: str, reason: str | None) -> None:
        super().__init__(message)
        self.image_build_version_arn = image_build_version_arn
        self.status = status
        self.reason = reason


class ImageBuildTimeoutError(ImageBuilderError):
    """The wait ran out before the image became AVAILABLE (the build is cancelled first)."""


class InvalidCreateImageRequest(ImageBuilderError, ValueError, AirflowFailException):
    """A request that breaks a rule of the API; raised before any call to AWS.

    The message starts with ``source`` (an operator's: its task id) and names each offending argument as the
    user wrote it, its value (shortened when long) and the rule.  At DAG parse time it is a ``ValueError``; at run
    time it fails the task without Airflow retries (the same values would be rendered again).
    """

    def __init__(self, errors: list[str], source: str = "Invalid CreateImage request") -> None:
        self.errors = errors
        super().__init__(f"{source}: " + "; ".join(errors))
