"""State and rules of the emulated Image Builder service: lifecycle, idempotency, faults and the call journal.

Nothing here knows about HTTP.  :meth:`EmulatorState.handle` takes an operation name, the caller's region and
the decoded request, and returns an :class:`Outcome` that the wire layer (``server.py``) serializes.  Image
status is computed from the clock when read, so no background thread moves images along and a manual clock
makes the whole lifecycle deterministic.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import random
import re
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from airflow_imagebuilder.testing.clock import ManualClock, RealClock
from airflow_imagebuilder.testing.shapes import check_shape, operation_shapes

#: The lifecycle the emulator walks, in order.  TESTING is skipped when image tests are disabled.
PHASES: tuple[str, ...] = ("PENDING", "BUILDING", "TESTING", "DISTRIBUTING", "INTEGRATING")
OPERATIONS: tuple[str, ...] = ("CreateImage", "GetImage", "CancelImageCreation", "ListImageBuildVersions")

#: HTTP status of every error the emulator can answer with (the service model's own codes).
ERROR_STATUS: dict[str, int] = {
    "CallRateLimitExceededException": 429,
    "ClientException": 400,
    "ForbiddenException": 403,
    "IdempotentParameterMismatchException": 400,
    "InvalidRequestException": 400,
    "InvalidPaginationTokenException": 400,
    "ResourceInUseException": 400,
    "ResourceNotFoundException": 404,
    "ServiceException": 500,
    "ServiceQuotaExceededException": 402,
    "ServiceUnavailableException": 503,
}

_RECIPE_ARN = re.compile(
    r"^arn:(?P<partition>aws[^:]*):imagebuilder:[^:]+:(?:[0-9]{12}|aws):"
    r"(?P<kind>image|container)-recipe/(?P<name>[a-z0-9-_]+)/(?P<version>[0-9x]+\.[0-9x]+\.[0-9x]+)$"
)
_RESOURCE_NAME = re.compile(r"/(?P<name>[a-z0-9-_]+)$")


class EmulatorError(Exception):
    """A modeled service error: becomes ``x-amzn-ErrorType`` + ``{"message": ...}`` with its HTTP status."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = ERROR_STATUS[code]


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
        if self.operation != "*" and self.operation not in OPERATIONS:
            raise ValueError(f"Fault.operation: {self.operation!r} is not one of {', '.join(OPERATIONS)} or '*'")
        if self.code is not None and self.status is None:
            if self.code not in ERROR_STATUS:
                raise ValueError(f"Fault.code: {self.code!r} is not a modeled error; give its HTTP status too")
            self.status = ERROR_STATUS[self.code]
        if self.code is None and not self.drop_response and not self.latency:
            raise ValueError("Fault: give at least one of code, drop_response or latency")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"Fault.probability: {self.probability} is not within [0, 1]")
        if self.count is not None and self.count < 1:
            raise ValueError(f"Fault.count: {self.count} must be at least 1")


@dataclasses.dataclass(frozen=True)
class JournalEntry:
    """One call as the emulator saw it."""

    time: float
    operation: str
    region: str
    client_token: str | None
    image_arn: str | None
    outcome: str  # "ok", the error code, or "dropped"
    status: int
    request_id: str
    access_key_id: str | None = None  # from the SigV4 credential scope: shows credential refreshes


@dataclasses.dataclass
class Outcome:
    """What the wire layer sends back."""

    status: int
    body: dict[str, Any]
    request_id: str
    error_code: str | None = None
    drop_response: bool = False
    latency: float = 0.0


@dataclasses.dataclass
class _Build:
    arn: str
    region: str
    account_id: str
    partition: str
    kind: str  # "image" or "container"
    name: str
    version: str
    number: int
    request: dict[str, Any]
    created_at: float
    created_wall: dt.datetime
    phases: list[tuple[str, float, float]]  # (status, start offset, end offset)
    failure: tuple[str, str] | None = None  # (phase, reason)
    cancelled_at: float | None = None
    distribution_regions: tuple[str, ...] = ()


class EmulatorState:
    """Everything the emulated service remembers.  Thread-safe: every public method takes the one lock.

    :param clock: ``RealClock()`` (default) or a :class:`ManualClock` the test advances.
    :param phase_seconds: duration of each lifecycle phase: one number for all, or a mapping per phase name.
    :param account_id: the account the emulated images belong to.
    :param seed: seed of the random source used by probabilistic faults.
    :param visibility_delay: seconds after CreateImage during which GetImage answers ResourceNotFoundException
        (the service's eventual consistency).
    :param validate_responses: check every successful response against botocore's output shape and answer
        ServiceException when one does not conform (on in the test suite).
    """

    def __init__(
        self,
        *,
        clock: RealClock | ManualClock | None = None,
        phase_seconds: float | Mapping[str, float] = 1.0,
        account_id: str = "123456789012",
        seed: int = 0,
        visibility_delay: float = 0.0,
        validate_responses: bool = False,
    ) -> None:
        self.clock = clock or RealClock()
        self.account_id = account_id
        self.visibility_delay = visibility_delay
        self.validate_responses = validate_responses
        self._phase_seconds = self._phase_durations(phase_seconds)
        self._lock = threading.RLock()
        self._random = random.Random(seed)
        self._builds: dict[str, _Build] = {}
        self._build_numbers: dict[tuple[str, str, str], int] = {}
        self._create_tokens: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        self._cancel_tokens: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        self._faults: list[Fault] = []
        self._planned_failures: list[tuple[str, str]] = []
        self._distribution_regions: dict[str, tuple[str, ...]] = {}
        self._journal: list[JournalEntry] = []

    @staticmethod
    def _phase_durations(phase_seconds: float | Mapping[str, float]) -> dict[str, float]:
        if isinstance(phase_seconds, Mapping):
            unknown = set(phase_seconds) - set(PHASES)
            if unknown:
                raise ValueError(f"phase_seconds: unknown phases {sorted(unknown)}; phases are {PHASES}")
            durations = {phase: float(phase_seconds.get(phase, 1.0)) for phase in PHASES}
        else:
            durations = dict.fromkeys(PHASES, float(phase_seconds))
        for phase, seconds in durations.items():
            if seconds < 0:
                raise ValueError(f"phase_seconds[{phase}]: {seconds} must be >= 0")
        return durations

    # ---------------------------------------------------------------- controls used by tests and the CLI
    def add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def add_fault_mix(
        self,
        error_share: float,
        drop_share: float = 0.0,
        codes: tuple[str, ...] = ("CallRateLimitExceededException", "ServiceException", "ServiceUnavailableException"),
    ) -> None:
        """Answer ``error_share`` of all calls with ``codes`` (in equal parts) and drop ``drop_share`` of responses.

        Faults are drawn in order, so each probability is its share of the calls the earlier ones left.
        """
        if error_share + drop_share >= 1:
            raise ValueError(f"add_fault_mix: error_share + drop_share must be below 1, got {error_share + drop_share}")
        taken = 0.0
        shares = [({"code": code}, error_share / len(codes)) for code in codes] + [
            ({"drop_response": True}, drop_share)
        ]
        for fault, share in shares:
            if share:
                self.add_fault(Fault(operation="*", probability=share / (1 - taken), **fault))  # type: ignore[arg-type]
            taken += share

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def set_phase_seconds(self, phase_seconds: float | Mapping[str, float]) -> None:
        """Change the phase durations of builds created from now on."""
        durations = self._phase_durations(phase_seconds)
        with self._lock:
            self._phase_seconds = durations

    def fail_next_builds(self, phase: str = "BUILDING", reason: str = "Build failed", count: int = 1) -> None:
        """Make the next ``count`` new builds fail at the end of ``phase`` with ``reason``."""
        if phase not in PHASES:
            raise ValueError(f"fail_next_builds: phase {phase!r} is not one of {PHASES}")
        with self._lock:
            self._planned_failures.extend([(phase, reason)] * count)

    def set_distribution_regions(self, distribution_configuration_arn: str, regions: list[str]) -> None:
        """Say which regions a distribution configuration distributes to (default: the caller's region)."""
        if not regions:
            raise ValueError("set_distribution_regions: regions must not be empty")
        with self._lock:
            self._distribution_regions[distribution_configuration_arn] = tuple(regions)

    def journal(self, operation: str | None = None) -> list[JournalEntry]:
        with self._lock:
            return [entry for entry in self._journal if operation is None or entry.operation == operation]

    def image_arns(self) -> list[str]:
        with self._lock:
            return list(self._builds)

    def status(self, arn: str) -> str:
        with self._lock:
            return self._status(self._builds[arn])[0]

    def statuses(self) -> dict[str, str]:
        with self._lock:
            return {arn: self._status(build)[0] for arn, build in self._builds.items()}

    # ---------------------------------------------------------------- the service
    def handle(self, operation: str, region: str, params: dict[str, Any], access_key_id: str | None = None) -> Outcome:
        """Run one call through faults, validation and the operation; journal it."""
        request_id = str(uuid.uuid4())
        with self._lock:
            fault = self._draw_fault(operation)
            token = params.get("clientToken") if isinstance(params.get("clientToken"), str) else None
            arn: str | None = None
            if fault is not None and fault.code is not None:
                outcome = Outcome(fault.status or 500, {"message": fault.message}, request_id, fault.code)
            else:
                try:
                    body = self._dispatch(operation, region, params)
                    arn = body.get("imageBuildVersionArn") or body.get("image", {}).get("arn")
                    body["requestId"] = request_id
                    self._check_response(operation, body)
                    outcome = Outcome(200, body, request_id)
                except EmulatorError as error:
                    outcome = Outcome(error.status, {"message": error.message}, request_id, error.code)
            if fault is not None:
                outcome.drop_response = fault.drop_response
                outcome.latency = fault.latency
            label = "dropped" if outcome.drop_response else (outcome.error_code or "ok")
            self._journal.append(
                JournalEntry(
                    self.clock.now(), operation, region, token, arn, label, outcome.status, request_id, access_key_id
                )
            )
            return outcome

    def _check_response(self, operation: str, body: dict[str, Any]) -> None:
        if not self.validate_responses:
            return
        violations = check_shape(body, operation_shapes(operation)[1])
        if violations:
            raise EmulatorError("ServiceException", "Emulator produced an invalid response: " + "; ".join(violations))

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

    def _dispatch(self, operation: str, region: str, params: dict[str, Any]) -> dict[str, Any]:
        if operation not in OPERATIONS:
            raise EmulatorError("InvalidRequestException", f"The emulator does not implement {operation}")
        violations = check_shape(params, operation_shapes(operation)[0], path=operation)
        if violations:
            raise EmulatorError("InvalidRequestException", "; ".join(violations))
        handler = {
            "CreateImage": self._create_image,
            "GetImage": self._get_image,
            "CancelImageCreation": self._cancel_image_creation,
            "ListImageBuildVersions": self._list_image_build_versions,
        }[operation]
        return handler(region, params)

    def _create_image(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        recipes = [key for key in ("imageRecipeArn", "containerRecipeArn") if key in params]
        if len(recipes) != 1:
            raise EmulatorError(
                "InvalidRequestException",
                "You must specify exactly one recipe for your image, using either a containerRecipeArn or an "
                f"imageRecipeArn (got {len(recipes)})",
            )
        token = params["clientToken"]
        fingerprint = json.dumps({k: v for k, v in params.items() if k != "clientToken"}, sort_keys=True)
        previous = self._create_tokens.get((region, token))
        if previous is not None:
            if previous[0] != fingerprint:
                raise EmulatorError(
                    "IdempotentParameterMismatchException",
                    f"The client token {token} was already used with different request parameters",
                )
            return dict(previous[1])
        match = _RECIPE_ARN.match(params[recipes[0]])
        if match is None:  # pragma: no cover - the shape check rejects it first
            raise EmulatorError("InvalidRequestException", f"Malformed recipe ARN {params[recipes[0]]}")
        version = ".".join("0" if part == "x" else part for part in match["version"].split("."))
        key = (region, match["name"], version)
        number = self._build_numbers.get(key, 0) + 1
        self._build_numbers[key] = number
        arn = (
            f"arn:{match['partition']}:imagebuilder:{region}:{self.account_id}:image/{match['name']}/{version}/{number}"
        )
        tests_enabled = params.get("imageTestsConfiguration", {}).get("imageTestsEnabled", True)
        phases, offset = [], 0.0
        for phase in PHASES:
            if phase == "TESTING" and not tests_enabled:
                continue
            phases.append((phase, offset, offset + self._phase_seconds[phase]))
            offset += self._phase_seconds[phase]
        distribution = params.get("distributionConfigurationArn")
        self._builds[arn] = _Build(
            arn=arn,
            region=region,
            account_id=self.account_id,
            partition=match["partition"],
            kind=match["kind"],
            name=match["name"],
            version=version,
            number=number,
            request=dict(params),
            created_at=self.clock.now(),
            created_wall=dt.datetime.now(dt.timezone.utc),
            phases=phases,
            failure=self._planned_failures.pop(0) if self._planned_failures else None,
            distribution_regions=self._distribution_regions.get(distribution or "", (region,)),
        )
        response = {"clientToken": token, "imageBuildVersionArn": arn}
        self._create_tokens[(region, token)] = (fingerprint, response)
        return dict(response)

    def _find(self, region: str, arn: str) -> _Build:
        build = self._builds.get(arn)
        if build is None or build.region != region or (self.clock.now() - build.created_at < self.visibility_delay):
            raise EmulatorError("ResourceNotFoundException", f"Image {arn} cannot be found")
        return build

    def _status(self, build: _Build) -> tuple[str, str | None]:
        elapsed = self.clock.now() - build.created_at
        if build.cancelled_at is not None and self.clock.now() >= build.cancelled_at:
            return "CANCELLED", "Image creation was cancelled by the user (CancelImageCreation)"
        for phase, _start, end in build.phases:
            if elapsed < end:
                return phase, None
            if build.failure is not None and build.failure[0] == phase:
                return "FAILED", build.failure[1]
        return "AVAILABLE", None

    def _get_image(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        arn = params["imageBuildVersionArn"]
        build = self._find(region, arn)
        return {"image": self._describe(build)}

    def _describe(self, build: _Build) -> dict[str, Any]:
        status, reason = self._status(build)
        request = build.request
        state: dict[str, Any] = {"status": status}
        if reason:
            state["reason"] = reason
        recipe_arn = request.get("imageRecipeArn") or request["containerRecipeArn"]
        image: dict[str, Any] = {
            "arn": build.arn,
            "type": "AMI" if build.kind == "image" else "DOCKER",
            "name": build.name,
            "version": build.version,
            "platform": "Linux",
            "enhancedImageMetadataEnabled": request.get("enhancedImageMetadataEnabled", True),
            "state": state,
            "infrastructureConfiguration": {
                "arn": request["infrastructureConfigurationArn"],
                "name": _resource_name(request["infrastructureConfigurationArn"]),
            },
            "imageTestsConfiguration": {"imageTestsEnabled": True, "timeoutMinutes": 720}
            | request.get("imageTestsConfiguration", {}),
            "dateCreated": build.created_wall.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "buildType": "USER_INITIATED",
            "imageSource": "CUSTOM",
        }
        recipe = {"arn": recipe_arn, "name": build.name, "version": build.version, "platform": "Linux"}
        image["imageRecipe" if build.kind == "image" else "containerRecipe"] = recipe
        if "distributionConfigurationArn" in request:
            image["distributionConfiguration"] = {
                "arn": request["distributionConfigurationArn"],
                "name": _resource_name(request["distributionConfigurationArn"]),
                "timeoutMinutes": 720,
            }
        for member in ("tags", "imageScanningConfiguration", "executionRole", "workflows", "loggingConfiguration"):
            if member in request:
                image[member] = request[member]
        if status == "AVAILABLE":
            image["outputResources"] = self._output_resources(build)
        return image

    def _output_resources(self, build: _Build) -> dict[str, Any]:
        if build.kind == "container":
            repository = (
                build.request.get("imageScanningConfiguration", {})
                .get("ecrConfiguration", {})
                .get("repositoryName", build.name)
            )
            return {
                "containers": [
                    {
                        "region": region,
                        "imageUris": [
                            f"{build.account_id}.dkr.ecr.{region}.amazonaws.com/{repository}:"
                            f"{build.version}-{build.number}"
                        ],
                    }
                    for region in build.distribution_regions
                ]
            }
        amis = []
        for region in build.distribution_regions:
            digest = hashlib.sha256(f"{build.arn}|{region}".encode()).hexdigest()
            amis.append(
                {
                    "region": region,
                    "image": f"ami-{digest[:17]}",
                    "name": f"{build.name} {build.created_wall:%Y-%m-%dT%H-%M-%SZ}",
                    "state": {"status": "AVAILABLE"},
                    "accountId": build.account_id,
                }
            )
        return {"amis": amis}

    def _cancel_image_creation(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        arn, token = params["imageBuildVersionArn"], params["clientToken"]
        previous = self._cancel_tokens.get((region, token))
        if previous is not None:
            if previous[0] != arn:
                raise EmulatorError(
                    "IdempotentParameterMismatchException",
                    f"The client token {token} was already used to cancel a different image",
                )
            return dict(previous[1])
        build = self._find(region, arn)
        status, _ = self._status(build)
        if status not in PHASES:
            raise EmulatorError(
                "ResourceInUseException", f"Image {arn} cannot be cancelled because its status is {status}"
            )
        build.cancelled_at = self.clock.now()
        response = {"clientToken": token, "imageBuildVersionArn": arn}
        self._cancel_tokens[(region, token)] = (arn, response)
        return dict(response)

    def _list_image_build_versions(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        if "filters" in params:
            raise EmulatorError("InvalidRequestException", "The emulator does not support filters")
        version_arn = params.get("imageVersionArn")
        if version_arn is None:
            raise EmulatorError("InvalidRequestException", "imageVersionArn is required")
        builds = [
            build
            for build in self._builds.values()
            if build.region == region and build.arn.rsplit("/", 1)[0] == version_arn
        ]
        start = 0
        if "nextToken" in params:
            if not params["nextToken"].isdigit():
                raise EmulatorError("InvalidPaginationTokenException", f"Invalid nextToken {params['nextToken']}")
            start = int(params["nextToken"])
        size = params.get("maxResults", 25)
        page = builds[start : start + size]
        summaries = []
        for build in page:
            described = self._describe(build)
            summary: dict[str, Any] = {
                key: described[key]
                for key in (
                    "arn",
                    "name",
                    "type",
                    "version",
                    "platform",
                    "state",
                    "dateCreated",
                    "outputResources",
                    "tags",
                    "buildType",
                    "imageSource",
                )
                if key in described
            }
            summary["owner"] = build.account_id
            summaries.append(summary)
        body: dict[str, Any] = {"imageSummaryList": summaries}
        if start + size < len(builds):
            body["nextToken"] = str(start + size)
        return body


def _resource_name(arn: str) -> str:
    match = _RESOURCE_NAME.search(arn)
    return match["name"] if match else arn
