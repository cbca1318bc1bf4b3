"""Exceptions raised by the provider.

Which Image Builder error becomes which exception is decided in one place, :data:`ERROR_POLICY` in
``hooks.py``; this module only defines the types and their messages.

* :class:`ImageBuilderRequestRejected` subclasses ``AirflowFailException``: the task fails without Airflow
  retries, because a retry would send the same rejected request again.
* Every other class here is a plain exception, so Airflow's ``retries`` apply.
"""

from __future__ import annotations

from airflow.providers.common.compat.sdk import AirflowFailException


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
    """

    def __init__(
        self,
        operation: str,
        code: str,
        message: str,
        request_id: str | None = None,
        attempts: int = 1,
        hint: str = "",
    ) -> None:
        self.operation = operation
        self.code = code
        self.service_message = message
        self.request_id = request_id
        self.attempts = attempts
        text = f"{operation} failed with {code}: {message}"
        if request_id:
            text += f" (request id {request_id})"
        text += f" after {attempts} attempt{'s' if attempts != 1 else ''}."
        if hint:
            text += f" {hint}"
        super().__init__(text)


class ImageBuilderRequestRejected(ImageBuilderApiError, AirflowFailException):
    """The service rejected the request itself; retrying the task cannot help, so Airflow does not retry."""


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
