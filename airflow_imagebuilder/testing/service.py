"""The service as callers meet it: injected faults and the call journal, in front of the backend.

:meth:`EmulatedService.handle` takes an operation, the caller's region and the decoded request and returns an
:class:`Outcome` that the wire layer (``server.py``) serializes.  A fault decides whether the backend runs at all
(an injected error), whether the answer is lost (``drop_response``) and how late it comes (``latency``).  Two
broader conditions come before faults: an outage (the whole service answers 503, or drops every connection
unprocessed) and denied access keys (every request signed with one answers 403).  Every call is journaled.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import uuid
from typing import Any

from airflow_imagebuilder.testing.backend import ImageBuilderBackend
from airflow_imagebuilder.testing.errors import (
    ERROR_STATUS,
    MODELED_ERRORS,
    EmulatorBug,
    NotImplementedByEmulator,
    ServiceError,
)
from airflow_imagebuilder.testing.shapes import check_shape, operation_shapes

#: How an outage shows: ``unavailable`` answers ServiceUnavailableException (503) to every call; ``drop`` closes
#: every connection without processing the call or answering (journaled as ``connection-dropped``).
OUTAGE_MODES: tuple[str, ...] = ("unavailable", "drop")
#: What a denied access key is answered, unless told otherwise.
DENIED_CODE = "AccessDeniedException"

#: Codes the default fault mix answers with, in equal parts.
FAULT_MIX_CODES: tuple[str, ...] = (
    "CallRateLimitExceededException",
    "ServiceException",
    "ServiceUnavailableException",
)


@dataclasses.dataclass
class Fault:
    """A fault injected into calls of one operation (``"*"`` for all).

    :param operation: operation name, or ``"*"``.
    :param code: error code to answer with instead of processing the call (its modeled HTTP status is used
        unless ``status`` is given).
    :param status: HTTP status for ``code``; needed only for codes the model does not list.
    :param message: the error message.
    :param drop_response: process the call, then close the connection without answering (a lost response).
    :param latency: seconds to wait before answering.
    :param count: apply to the next ``count`` matching calls, then expire.
    :param probability: apply to each matching call with this probability (seeded, reproducible).
    """

    operation: str = "*"
    code: str | None = None
    status: int | None = None
    message: str = "Fault injected by the emulator"
    drop_response: bool = False
    latency: float = 0.0
    count: int | None = None
    probability: float | None = None

    def __post_init__(self) -> None:
        if self.code is not None and self.status is None:
            if self.code not in MODELED_ERRORS:
                raise ValueError(f"Fault.code: {self.code!r} is not a modeled error; give its HTTP status too")
            self.status = ERROR_STATUS[self.code]
        if self.code is None and not self.drop_response and not self.latency:
            raise ValueError("Fault: give at least one of code, drop_response or latency")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"Fault.probability: {self.probability} is not within [0, 1]")
        if self.count is not None and self.count < 1:
            raise ValueError(f"Fault.count: {self.count} must be at least 1")
        if self.latency < 0:
            raise ValueError(f"Fault.latency: {self.latency} must be >= 0")


@dataclasses.dataclass(frozen=True)
class JournalEntry:
    """One call as the emulator saw it."""

    time: float
    operation: str
    region: str
    client_token: str | None
    image_arn: str | None
    #: "ok", the error code, "dropped" (processed, answer lost) or "connection-dropped" (outage: not processed)
    outcome: str
    status: int
    request_id: str
    access_key_id: str | None = None  # from the SigV4 credential scope: shows credential refreshes
    #: The request's parameters as decoded (empty for a call turned away before decoding): the resources it names
    request: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Outcome:
    """What the wire layer sends back."""

    status: int
    body: dict[str, Any]
    request_id: str
    error_code: str | None = None
    drop_response: bool = False
    latency: float = 0.0
    #: Close the connection without an answer because of an outage (the call was not processed).
    drop_connection: bool = False


class EmulatedService:
    """Faults and the journal in front of an :class:`ImageBuilderBackend`.

    :param backend: the operations and their state.
    :param seed: seed of the random source used by probabilistic faults.
    :param validate_responses: check every successful response against botocore's output shape; a response
        that does not conform is answered as an :class:`~.errors.EmulatorBug` (HTTP 501, never retried).
    """

    def __init__(self, backend: ImageBuilderBackend, *, seed: int = 0, validate_responses: bool = False) -> None:
        self.backend = backend
        self.validate_responses = validate_responses
        self._random = random.Random(seed)
        self._faults: list[Fault] = []
        self._journal: list[JournalEntry] = []
        self._outage: str | None = None
        self._denied: dict[str, tuple[str, int, str | None]] = {}

    # ---------------------------------------------------------------- controls
    def add_fault(self, fault: Fault) -> Fault:
        """Inject ``fault`` into the matching calls from now on."""
        if fault.operation != "*" and fault.operation not in self.backend.operations:
            raise ValueError(
                f"Fault.operation: {fault.operation!r} is not one of {', '.join(self.backend.operations)} or '*'"
            )
        with self.backend.lock:
            self._faults.append(fault)
        return fault

    def add_fault_mix(
        self, error_share: float, drop_share: float = 0.0, codes: tuple[str, ...] | list[str] = FAULT_MIX_CODES
    ) -> None:
        """Answer ``error_share`` of all calls with ``codes`` (in equal parts) and drop ``drop_share`` of responses.

        Faults are drawn in order, so each probability is its share of the calls the earlier ones left.
        """
        if error_share < 0 or drop_share < 0 or error_share + drop_share >= 1:
            raise ValueError(f"add_fault_mix: shares must be >= 0 and sum below 1, got {error_share} and {drop_share}")
        if not codes:
            raise ValueError("add_fault_mix: codes must not be empty")
        taken = 0.0
        shares: list[tuple[dict[str, Any], float]] = [({"code": code}, error_share / len(codes)) for code in codes]
        shares.append(({"drop_response": True}, drop_share))
        faults = []
        for fields, share in shares:
            if share:
                faults.append(Fault(operation="*", probability=share / (1 - taken), **fields))
            taken += share
        for fault in faults:
            self.add_fault(fault)

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        with self.backend.lock:
            self._faults.clear()

    def start_outage(self, mode: str = "unavailable") -> None:
        """Fail every call from now on, as :data:`OUTAGE_MODES` says ``mode`` does, until :meth:`end_outage`."""
        if mode not in OUTAGE_MODES:
            raise ValueError(f"start_outage: mode {mode!r} is not one of {', '.join(OUTAGE_MODES)}")
        with self.backend.lock:
            self._outage = mode

    def end_outage(self) -> None:
        """Answer calls again."""
        with self.backend.lock:
            self._outage = None

    @property
    def outage(self) -> str | None:
        """The current outage mode, None when the service answers."""
        return self._outage

    def deny_access_key(
        self, access_key_id: str, code: str = DENIED_CODE, status: int | None = None, message: str | None = None
    ) -> None:
        """Answer every call signed with ``access_key_id`` with ``code`` (HTTP 403 unless ``status`` is given).

        Like an IAM policy change (or a deactivated key) taking effect: the call is not run.  The default message
        reads like IAM's ``User: ... is not authorized to perform: imagebuilder:<Operation> ...``.
        """
        if not access_key_id:
            raise ValueError("deny_access_key: access_key_id must not be empty")
        with self.backend.lock:
            self._denied[access_key_id] = (code, status or ERROR_STATUS.get(code, 403), message)

    def allow_access_key(self, access_key_id: str | None = None) -> None:
        """Stop denying ``access_key_id`` (every denied key when None)."""
        with self.backend.lock:
            if access_key_id is None:
                self._denied.clear()
            else:
                self._denied.pop(access_key_id, None)

    def denied_access_keys(self) -> list[str]:
        """The access key ids currently denied."""
        with self.backend.lock:
            return sorted(self._denied)

    def journal(self, operation: str | None = None) -> list[JournalEntry]:
        """Every call so far (of ``operation`` only, if given), oldest first."""
        with self.backend.lock:
            return [entry for entry in self._journal if operation is None or entry.operation == operation]

    # ---------------------------------------------------------------- calls
    def handle(self, operation: str, region: str, params: dict[str, Any], access_key_id: str | None = None) -> Outcome:
        """Run one call through faults and the backend; journal it."""
        request_id = str(uuid.uuid4())
        with self.backend.lock:
            refused = self._refusal(operation, request_id, access_key_id)
            if refused is not None:
                self._record(operation, region, params, None, refused, access_key_id)
                return refused
            fault = self._draw_fault(operation)
            arn: str | None = None
            if fault is not None and fault.code is not None:
                outcome = Outcome(fault.status or 500, {"message": fault.message}, request_id, fault.code)
            else:
                try:
                    body = self.backend.call(operation, region, params)
                    arn = body.get("imageBuildVersionArn") or body.get("image", {}).get("arn")
                    body["requestId"] = request_id
                    self._check_response(operation, body)
                    outcome = Outcome(200, body, request_id)
                except ServiceError as error:
                    outcome = Outcome(error.status, {"message": error.message}, request_id, error.code)
                except (EmulatorBug, NotImplementedByEmulator) as error:
                    outcome = Outcome(error.status, {"message": error.message}, request_id, error.code)
                except Exception as error:
                    bug = EmulatorBug(operation, f"{type(error).__name__}: {error}")
                    outcome = Outcome(bug.status, {"message": bug.message}, request_id, bug.code)
            if fault is not None:
                outcome.drop_response = fault.drop_response
                outcome.latency = fault.latency
            self._record(operation, region, params, arn, outcome, access_key_id)
            return outcome

    def refuse(self, operation: str, region: str, code: str, message: str, access_key_id: str | None = None) -> Outcome:
        """Answer a call the front door turns away (no or malformed signature) without running it."""
        outcome = Outcome(ERROR_STATUS[code], {"message": message}, str(uuid.uuid4()), code)
        with self.backend.lock:
            self._record(operation, region, {}, None, outcome, access_key_id)
        return outcome

    def _record(
        self,
        operation: str,
        region: str,
        params: dict[str, Any],
        arn: str | None,
        outcome: Outcome,
        access_key_id: str | None,
    ) -> None:
        token = params.get("clientToken") if isinstance(params.get("clientToken"), str) else None
        if arn is None and isinstance(params.get("imageBuildVersionArn"), str):  # a call refused or failed
            arn = params["imageBuildVersionArn"]
        if outcome.drop_connection:
            label = "connection-dropped"
        else:
            label = "dropped" if outcome.drop_response else (outcome.error_code or "ok")
        self._journal.append(
            JournalEntry(
                self.backend.clock.now(),
                operation,
                region,
                token,
                arn,
                label,
                outcome.status,
                outcome.request_id,
                access_key_id,
                copy.deepcopy(params),
            )
        )

    def _check_response(self, operation: str, body: dict[str, Any]) -> None:
        if not self.validate_responses:
            return
        violations = check_shape(body, operation_shapes(operation)[1])
        if violations:
            raise EmulatorBug(operation, "its response does not conform to botocore's model: " + "; ".join(violations))

    def _refusal(self, operation: str, request_id: str, access_key_id: str | None) -> Outcome | None:
        """The outage's or a denied key's answer, which comes before faults and the backend; None if neither."""
        if self._outage == "drop":
            return Outcome(0, {}, request_id, drop_connection=True)
        if self._outage == "unavailable":
            unavailable = "Service Unavailable. Please try again later."
            return Outcome(503, {"message": unavailable}, request_id, "ServiceUnavailableException")
        if access_key_id is not None and access_key_id in self._denied:
            code, status, message = self._denied[access_key_id]
            if message is None:
                message = (
                    f"User: arn:aws:iam::{self.backend.account_id}:user/{access_key_id} is not authorized to perform: "
                    f"imagebuilder:{operation} with an explicit deny in an identity-based policy"
                )
            return Outcome(status, {"message": message}, request_id, code)
        return None

    def _draw_fault(self, operation: str) -> Fault | None:
        for fault in list(self._faults):
            if fault.operation not in ("*", operation):
                continue
            if fault.probability is not None and self._random.random() >= fault.probability:
                continue
            if fault.count is not None:
                fault.count -= 1
                if fault.count == 0:
                    self._faults.remove(fault)
            return fault
        return None
