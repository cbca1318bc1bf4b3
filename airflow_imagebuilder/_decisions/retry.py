"""What the provider does with each error of an Image Builder call: one classification, one retry policy.

Every call (sync and async) goes through :class:`CallRetry`, and both waits ask :func:`classify` whether an
error that outlasted the call's retries may end the wait.  Nothing here does I/O or sleeps: callers get a delay
to sleep, or the exception to raise.

botocore's standard and adaptive retry modes do not retry Image Builder's modeled
``CallRateLimitExceededException`` (HTTP 429), so the hook switches botocore's retries off and this module is the
one retry loop's brain, with the same client token on every attempt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import math
import random
from collections.abc import Callable
from typing import Any

import botocore.exceptions

from airflow_imagebuilder.exceptions import ImageBuilderApiError, ImageBuilderRequestRejected


class ErrorAction(enum.Enum):
    """What happens after an error answer."""

    #: Backed off and re-sent with the same client token, up to the policy's bound; a wait outlasts it.
    RETRY = "retry"
    #: A few backed-off retries on their own counter, then a task failure Airflow may retry.
    RETRY_BRIEFLY = "retry_briefly"
    #: The credentials expired: re-read them once and re-send; if that does not help, a retryable task failure.
    REFRESH_CREDENTIALS = "refresh_credentials"
    #: A task failure Airflow may retry (the condition may clear by itself).
    FAIL_RETRYABLE = "fail_retryable"
    #: Fail without Airflow retries: sending the same request again cannot succeed.
    REJECT = "reject"
    #: The resource does not exist (yet).  A wait's GetImage takes it for eventual consistency; any other call
    #: (a recipe, configuration or pipeline the request names) is rejected.
    NOT_FOUND = "not_found"

    @property
    def keeps_waiting(self) -> bool:
        """True when a wait may go on after this error outlasted the call's retries."""
        return self in (ErrorAction.RETRY, ErrorAction.RETRY_BRIEFLY)


#: The error table: every code the provider knows, with what it does.  Codes not listed are rejected (an HTTP 5xx
#: or 429 answer with an unknown code is retried like ServiceException).
ERROR_ACTIONS: dict[str, ErrorAction] = {
    "CallRateLimitExceededException": ErrorAction.RETRY,
    "ThrottlingException": ErrorAction.RETRY,
    "TooManyRequestsException": ErrorAction.RETRY,
    "ServiceUnavailableException": ErrorAction.RETRY,
    "ServiceException": ErrorAction.RETRY,
    # Throttling and timeouts any AWS endpoint may answer (botocore's own retry handler retries these).
    "Throttling": ErrorAction.RETRY,
    "RequestThrottled": ErrorAction.RETRY,
    "RequestThrottledException": ErrorAction.RETRY,
    "RequestLimitExceeded": ErrorAction.RETRY,
    "RequestTimeout": ErrorAction.RETRY,
    "RequestTimeoutException": ErrorAction.RETRY,
    "PriorRequestNotComplete": ErrorAction.RETRY,
    "InternalFailure": ErrorAction.RETRY,
    "InternalServerError": ErrorAction.RETRY,
    "ResourceInUseException": ErrorAction.RETRY_BRIEFLY,
    "ServiceQuotaExceededException": ErrorAction.FAIL_RETRYABLE,
    "ExpiredTokenException": ErrorAction.REFRESH_CREDENTIALS,
    "IdempotentParameterMismatchException": ErrorAction.REJECT,
    "ClientException": ErrorAction.REJECT,
    "InvalidRequestException": ErrorAction.REJECT,
    "InvalidParameterValueException": ErrorAction.REJECT,
    "InvalidParameterCombinationException": ErrorAction.REJECT,
    "InvalidVersionNumberException": ErrorAction.REJECT,
    "ForbiddenException": ErrorAction.REJECT,
    "AccessDeniedException": ErrorAction.REJECT,
    "UnrecognizedClientException": ErrorAction.REJECT,
    "InvalidSignatureException": ErrorAction.REJECT,
    "ResourceNotFoundException": ErrorAction.NOT_FOUND,
}

#: Codes that mean "these credentials may not do this": the hint names the connection and the permissions.
AUTH_CODES = frozenset(
    {
        "ForbiddenException",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "ExpiredTokenException",
    }
)
#: The IAM actions a user of this provider needs.
PERMISSIONS = (
    "imagebuilder:CreateImage, imagebuilder:GetImage, imagebuilder:CancelImageCreation, "
    "imagebuilder:GetImagePipeline, imagebuilder:StartImagePipelineExecution, iam:PassRole"
)
_HINTS: dict[str, str] = {
    "ServiceQuotaExceededException": (
        "An Image Builder quota (for example concurrent image builds per account and region) is exhausted; "
        "the task may succeed on a retry once other builds end, or raise the quota in Service Quotas."
    ),
    "IdempotentParameterMismatchException": (
        "The client token was already used for a request with different parameters. Give a new client_token, "
        "or omit it to let the operator derive one from the task and the request."
    ),
    "ResourceInUseException": "The resource is in use by another operation; the task may succeed on a retry.",
    "ResourceNotFoundException": (
        "A resource the request names does not exist in this account and region: check the ARN and the region "
        "of connection {conn_id!r}."
    ),
    "ExpiredTokenException": (
        "The session credentials of connection {conn_id!r} expired and re-reading them did not help. Static "
        "session credentials cannot be renewed by the provider: configure the connection with a role_arn (the "
        "Amazon provider refreshes assumed-role credentials) or with keys that do not expire."
    ),
}
_AUTH_HINT = (
    "Check the credentials of connection {conn_id!r} (access key, secret, session token or role_arn, region) and "
    "that its identity is allowed the Image Builder actions ({permissions}); for CreateImage also check "
    "execution_role."
)
_UNKNOWN_HINT = "The provider does not know this error code, so it does not retry it."

#: Transport failures: the request may or may not have reached the service, so it is re-sent with the same token.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    botocore.exceptions.HTTPClientError,  # connection reset/closed, read timeout
    botocore.exceptions.ConnectionError,  # endpoint unreachable, connect timeout
    asyncio.TimeoutError,
)


def classify(code: str, http_status: int | None = None) -> ErrorAction:
    """The action for an error code; unknown codes are rejected, unless the service answered 429 or 5xx."""
    action = ERROR_ACTIONS.get(code)
    if action is not None:
        return action
    if http_status is not None and (http_status == 429 or http_status >= 500):
        return ErrorAction.RETRY
    return ErrorAction.REJECT


def hint(code: str, conn_id: str | None = None, action: ErrorAction | None = None) -> str:
    """What the user can do about an error code (empty when there is nothing useful to say).

    ``action``: what was done with the error, when the answer's HTTP status decided it (an unknown 5xx code).
    """
    conn = conn_id if conn_id is not None else "(none)"
    if code in _HINTS:
        return _HINTS[code].format(conn_id=conn)
    if code in AUTH_CODES:
        return _AUTH_HINT.format(conn_id=conn, permissions=PERMISSIONS)
    if code not in ERROR_ACTIONS and (action or classify(code)) is ErrorAction.REJECT:
        return _UNKNOWN_HINT
    return ""


@dataclasses.dataclass(frozen=True)
class ErrorAnswer:
    """One failed call, as the classification sees it."""

    code: str
    message: str
    request_id: str | None = None
    http_status: int | None = None
    #: No answer at all (connection reset, timeout): the request may or may not have reached the service.
    transport: bool = False

    @classmethod
    def of(cls, error: BaseException) -> ErrorAnswer | None:
        """The answer behind a botocore client or transport error; None for anything else."""
        if isinstance(error, botocore.exceptions.ClientError):
            response: dict[str, Any] = dict(error.response)
            details = response.get("Error", {})
            metadata = response.get("ResponseMetadata", {})
            return cls(
                code=details.get("Code") or "Unknown",
                message=details.get("Message") or response.get("message") or str(error),
                request_id=metadata.get("RequestId"),
                http_status=metadata.get("HTTPStatusCode"),
            )
        if isinstance(error, TRANSPORT_ERRORS):
            return cls(code=type(error).__name__, message=str(error) or repr(error), transport=True)
        return None

    @property
    def action(self) -> ErrorAction:
        if self.transport:
            return ErrorAction.RETRY
        return classify(self.code, self.http_status)


def api_error(operation: str, answer: ErrorAnswer, attempts: int, conn_id: str | None = None) -> ImageBuilderApiError:
    """The exception for a call that ends with ``answer``: rejected ones fail without Airflow retries."""
    action = answer.action
    rejected = action in (ErrorAction.REJECT, ErrorAction.NOT_FOUND)
    error_class = ImageBuilderRequestRejected if rejected else ImageBuilderApiError
    return error_class(
        operation,
        answer.code,
        answer.message,
        answer.request_id,
        attempts,
        hint(answer.code, conn_id, action),
        transient=action.keeps_waiting,
    )


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Backoff for retried API errors: delay ``min(max_delay, base_delay * 2**n)``, half of it jittered.

    Gives up after ``max_attempts`` calls or ``max_elapsed`` seconds, whichever comes first;
    ResourceInUseException answers get at most ``in_use_attempts`` calls, counted on their own.  The default
    attempts outlast the default ``max_elapsed`` (about 30 calls fit in 600 s of backoff), so a service outage is
    ridden out for the whole bound rather than for the two to three minutes twelve calls would last.
    """

    max_attempts: int = 40
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_elapsed: float = 600.0
    in_use_attempts: int = 4

    def __post_init__(self) -> None:
        for name in ("max_attempts", "in_use_attempts"):
            value = getattr(self, name)
            if type(value) is float and value.is_integer() and value >= 1:  # 3.0 from JSON or YAML means 3
                value = int(value)
                object.__setattr__(self, name, value)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"api_retry: {name} must be an integer of at least 1, got {value!r}")
        for name in ("base_delay", "max_delay", "max_elapsed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ValueError(f"api_retry: {name} must be a finite number of seconds >= 0, got {value!r}")

    def delay(self, attempt: int, rng: Callable[[float, float], float] = random.uniform) -> float:
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return ceiling / 2 + rng(0, ceiling / 2)

    def bounded(self, max_elapsed: float) -> RetryPolicy:
        """The same policy, giving up after at most ``max_elapsed`` seconds (for calls with a deadline)."""
        max_elapsed = max(0.0, max_elapsed)
        return dataclasses.replace(
            self, max_elapsed=min(self.max_elapsed, max_elapsed), max_delay=min(self.max_delay, max_elapsed / 4)
        )

    @classmethod
    def from_value(cls, value: RetryPolicy | dict[str, Any] | None) -> RetryPolicy:
        if value is None:
            return cls()
        if isinstance(value, RetryPolicy):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"api_retry must be a dict of RetryPolicy fields, got {type(value).__name__} {value!r}")
        known = [field.name for field in dataclasses.fields(cls)]
        unknown = set(value) - set(known)
        if unknown:
            raise ValueError(f"api_retry: unknown keys {sorted(unknown)}; known: {', '.join(known)}")
        return cls(**value)


@dataclasses.dataclass(frozen=True)
class RetryStep:
    """Re-send after ``delay`` seconds; ``refresh_credentials`` asks the caller to re-read its credentials first."""

    delay: float
    refresh_credentials: bool = False


class CallRetry:
    """The retry decisions of one call: counts its attempts and says, per failure, retry (how) or raise (what).

    :param policy: the retry policy.
    :param operation: the API operation, for messages.
    :param conn_id: the Airflow connection, for hints.
    :param clock: seconds, monotonic (injected by tests).
    """

    def __init__(
        self,
        policy: RetryPolicy,
        operation: str,
        conn_id: str | None,
        clock: Callable[[], float],
        rng: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.policy = policy
        self.operation = operation
        self.conn_id = conn_id
        self._clock = clock
        self._rng = rng
        self._started = clock()
        self.attempts = 0
        self._in_use_answers = 0
        self._refreshed = False

    def failed(self, error: BaseException) -> RetryStep:
        """Record a failed attempt; return how to retry, or raise the exception the caller should see."""
        self.attempts += 1
        answer = ErrorAnswer.of(error)
        if answer is None:
            raise error
        action = answer.action
        if action is ErrorAction.REFRESH_CREDENTIALS and not self._refreshed:
            self._refreshed = True
            return RetryStep(delay=0.0, refresh_credentials=True)
        if action is ErrorAction.RETRY_BRIEFLY:
            self._in_use_answers += 1
            if self._in_use_answers >= self.policy.in_use_attempts:
                raise api_error(self.operation, answer, self.attempts, self.conn_id) from error
        elif action is not ErrorAction.RETRY:
            raise api_error(self.operation, answer, self.attempts, self.conn_id) from error
        delay = self.policy.delay(self.attempts, self._rng)
        if self.attempts >= self.policy.max_attempts or self._clock() - self._started + delay > self.policy.max_elapsed:
            raise api_error(self.operation, answer, self.attempts, self.conn_id) from error
        return RetryStep(delay=delay)


#: Error codes meaning "these credentials are refused": the provider's own (:data:`AUTH_CODES`), plus the
#: spellings of SQS's query protocol and of AWS's common errors list (AccessDenied, ExpiredToken, NotAuthorized).
#: An HTTP 403 answer counts too, whatever its code: AWS answers refused credentials with 403.
REFUSED_CREDENTIALS_CODES = AUTH_CODES | {"AccessDenied", "ExpiredToken", "NotAuthorized"}


def credentials_refused(error: BaseException) -> bool:
    """True when ``error`` says the credentials are missing, expired, revoked or not allowed the call.

    A new hook reads the connection again and may find other keys there (rotated by an operator, or renewed by a
    secrets backend); any other error is not helped by that.
    """
    if isinstance(error, (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError)):
        return True
    answer = ErrorAnswer.of(error)
    return answer is not None and (answer.code in REFUSED_CREDENTIALS_CODES or answer.http_status == 403)
