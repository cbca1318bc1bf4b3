"""Errors of the emulated service: the modeled ones, and the emulator's own (never disguised as the service's).

A :class:`ServiceError` is an error the real service answers with: it goes out with ``x-amzn-ErrorType``, a
``message`` and the HTTP status botocore's model gives the code.  An :class:`EmulatorBug` means the emulator itself
went wrong (for example its own response check failed): it goes out as HTTP 501 with a code and message that say
so, because botocore, aiobotocore and the provider's hook never retry a 501 or an unmodeled code, so a test fails
at once with the real cause instead of retrying a fake ``ServiceException``.
"""

from __future__ import annotations

#: HTTP status of every error code the emulator answers with (botocore's model of the service, plus the
#: authentication errors of the AWS front door).
ERROR_STATUS: dict[str, int] = {
    "AccessDeniedException": 403,
    "CallRateLimitExceededException": 429,
    "ClientException": 400,
    "DryRunOperationException": 412,
    "ForbiddenException": 403,
    "IdempotentParameterMismatchException": 400,
    "IncompleteSignatureException": 403,
    "InvalidPaginationTokenException": 400,
    "InvalidParameterCombinationException": 400,
    "InvalidParameterException": 400,
    "InvalidParameterValueException": 400,
    "InvalidRequestException": 400,
    "InvalidSignatureException": 403,
    "InvalidVersionNumberException": 400,
    "MissingAuthenticationTokenException": 403,
    "ResourceAlreadyExistsException": 400,
    "ResourceDependencyException": 400,
    "ResourceInUseException": 400,
    "ResourceNotFoundException": 404,
    "ServiceException": 500,
    "ServiceQuotaExceededException": 402,
    "ServiceUnavailableException": 503,
    "TooManyRequestsException": 429,
    "UnrecognizedClientException": 403,
}
#: The errors of the service's own model (what a fault may inject without naming a status).
MODELED_ERRORS: frozenset[str] = frozenset(ERROR_STATUS) - {
    "IncompleteSignatureException",
    "InvalidSignatureException",
    "MissingAuthenticationTokenException",
    "UnrecognizedClientException",
}
EMULATOR_BUG_CODE = "EmulatorBug"
NOT_IMPLEMENTED_CODE = "NotImplementedByEmulator"
EMULATOR_ERROR_STATUS = 501


class ServiceError(Exception):
    """An error the real service answers with: ``x-amzn-ErrorType`` + ``{"message": ...}`` with its status."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = ERROR_STATUS[code]


def invalid_parameter(parameter: str, detail: str) -> ServiceError:
    """The service's answer to a value that breaks a parameter rule."""
    return ServiceError(
        "InvalidParameterValueException", f"The value supplied for parameter '{parameter}' is not valid. {detail}"
    )


def not_found(arn: str) -> ServiceError:
    """The service's answer to a request naming a resource that does not exist."""
    return ServiceError("ResourceNotFoundException", f"The resource ARN '{arn}' does not exist.")


class EmulatorBug(Exception):
    """The emulator itself failed; answered as HTTP 501 ``EmulatorBug``, which no client retries."""

    code = EMULATOR_BUG_CODE
    status = EMULATOR_ERROR_STATUS

    def __init__(self, operation: str, detail: str) -> None:
        self.message = (
            f"Emulator bug, not a service error: {operation} failed inside the Image Builder emulator: {detail}. "
            "Please report it to airflow-imagebuilder with this message."
        )
        super().__init__(self.message)


class NotImplementedByEmulator(Exception):
    """An operation or parameter the emulator does not implement; answered as HTTP 501, never retried."""

    code = NOT_IMPLEMENTED_CODE
    status = EMULATOR_ERROR_STATUS

    def __init__(self, what: str) -> None:
        self.message = f"The Image Builder emulator does not implement {what}"
        super().__init__(self.message)
