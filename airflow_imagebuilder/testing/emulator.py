"""The emulator's two handles: :class:`ImageBuilderEmulator` in-process, :class:`EmulatorControl` for another process.

Both offer the same controls (faults, fault mixes, outages, denied access keys, planned failures naming a workflow
step, planned scan findings, phase durations, held builds, visibility delay, strict mode, the journal, events, the
clock).  Each is a method of :class:`ImageBuilderEmulator` marked with :func:`~.controls.control`, which also names
its route in the control API (``/_emulator/<path>``) and the command-line options that apply it at start-up
(``python -m airflow_imagebuilder.testing``); :class:`EmulatorControl`'s methods are derived from them.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from airflow_imagebuilder.testing.backend import ImageBuilderBackend
from airflow_imagebuilder.testing.clock import ManualClock, RealClock, Seconds
from airflow_imagebuilder.testing.controls import (
    CONTROL_PREFIX,
    CONTROL_TIMEOUT,
    Option,
    control,
    http_actions,
    parse_denied_key,
    parse_failure,
    parse_fault,
    parse_fault_mix,
    parse_json_body,
    parse_outage,
    remote_methods,
)
from airflow_imagebuilder.testing.events import EventPublisher, EventRecord
from airflow_imagebuilder.testing.resources import PlannedFailure
from airflow_imagebuilder.testing.server import EmulatorHTTPServer
from airflow_imagebuilder.testing.service import (
    DENIED_CODE,
    FAULT_MIX_CODES,
    OUTAGE_MODES,
    EmulatedService,
    Fault,
    JournalEntry,
)


class ImageBuilderEmulator:
    """Run the emulated service on ``host:port`` (``port=0`` picks a free one) for the ``with`` block.

    :param host: address to bind; loopback unless told otherwise.
    :param port: TCP port, 0 for any free port.
    :param phase_seconds: seconds per lifecycle phase: one value or a mapping per phase, each value a number or a
        ``[low, high]`` range from which every build draws its own duration.
    :param clock: a :class:`ManualClock` for tests that advance time; real time by default.
    :param strict: require the recipes, configurations and pipelines a request names to exist (seed them with
        the service's own Create calls); by default they are registered on first use.
    :param account_id: the account emulated resources belong to.
    :param seed: seed of the random sources of probabilistic faults and of phase durations given as ranges.
    :param visibility_delay: seconds after a build starts during which GetImage answers not found.
    :param validate_responses: check every response against botocore's model and answer an emulator bug
        (HTTP 501 ``EmulatorBug``, never retried) when one does not conform.
    :param events_endpoint_url: an EventBridge endpoint (moto server) to which every status change of every build
        is sent as Image Builder's state change event (see ``events.py``); no events when None.
    :param event_drop_share: share of those events never sent (best effort is the service's promise).
    :param event_delay: real seconds a delayed event is held back: a number or a ``[low, high]`` range.
    :param event_delay_share: share of the events not dropped that are delayed (all of them by default).
    :param credentials: access key id -> secret access key.  When given, every request's SigV4 signature is verified
        against them as the service does: an unknown key, a wrong secret or a body changed after signing, and a date
        more than 15 minutes away are refused with HTTP 403.  By default any well-formed signature is accepted.
    :param advance_on_poll: builds move one phase each time a GetImage sees them in progress (on a manual clock
        nothing else moves), so a wait needs polls, not time: what DAG tests want.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        phase_seconds: Seconds | Mapping[str, Seconds] = 1.0,
        clock: RealClock | ManualClock | None = None,
        *,
        strict: bool = False,
        account_id: str = "123456789012",
        seed: int = 0,
        visibility_delay: float = 0.0,
        validate_responses: bool = False,
        events_endpoint_url: str | None = None,
        event_drop_share: float = 0.0,
        event_delay: Seconds = 0.0,
        event_delay_share: float = 1.0,
        credentials: Mapping[str, str] | None = None,
        advance_on_poll: bool = False,
    ) -> None:
        self.credentials = dict(credentials) if credentials is not None else None
        self.backend = ImageBuilderBackend(
            clock=clock,
            advance_on_poll=advance_on_poll,
            phase_seconds=phase_seconds,
            account_id=account_id,
            visibility_delay=visibility_delay,
            strict=strict,
            seed=seed,
        )
        self.service = EmulatedService(self.backend, seed=seed, validate_responses=validate_responses)
        self._address = (host, port)
        self._server: EmulatorHTTPServer | None = None
        self.events: EventPublisher | None = None
        if events_endpoint_url:
            self.events = EventPublisher(
                self.backend,
                events_endpoint_url,
                drop_share=event_drop_share,
                delay=event_delay,
                delay_share=event_delay_share,
                seed=seed,
            )
        elif event_drop_share or event_delay:
            raise ValueError("event_drop_share and event_delay need events_endpoint_url")

    @property
    def state(self) -> ImageBuilderBackend:
        """The backend: resources, builds and their lifecycle (``image_arns()``, ``status(arn)``, ``build(arn)``)."""
        return self.backend

    def start(self) -> ImageBuilderEmulator:
        """Bind and serve in a background thread."""
        self._server = EmulatorHTTPServer(self._address, self.service, http_actions(self), self.credentials)
        self._server.serve_in_thread()
        if self.events is not None:
            self.events.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self.events is not None:
            self.events.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ImageBuilderEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        """``http://host:port`` of the running emulator, for ``endpoint_url`` of boto3 or an Airflow connection."""
        if self._server is None:
            raise RuntimeError("ImageBuilderEmulator is not running; use it as a context manager or call start()")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # ---------------------------------------------------------------- controls (see controls.py)
    @control(
        "POST",
        "faults",
        Option(
            "--fault",
            "inject a fault (repeatable), e.g. GetImage:CallRateLimitExceededException:count=3 or CreateImage:drop",
            parse_fault,
            "OP:CODE[:count=N,probability=P,latency=S]",
            repeat=True,
        ),
    )
    def add_fault(self, operation: str = "*", **fault: Any) -> Fault:
        """Inject a fault into calls of ``operation`` (``"*"`` for all); keyword arguments as :class:`Fault`."""
        return self.service.add_fault(Fault(operation=operation, **fault))

    @control(
        "POST",
        "fault-mix",
        Option(
            "--fault-mix",
            "answer this share of all calls with 429/500/503 and lose DROP_SHARE of responses, e.g. 0.2,0.05",
            parse_fault_mix,
            "ERROR_SHARE[,DROP_SHARE]",
        ),
    )
    def add_fault_mix(
        self, error_share: float, drop_share: float = 0.0, codes: tuple[str, ...] | list[str] = FAULT_MIX_CODES
    ) -> None:
        """Answer ``error_share`` of all calls with ``codes`` (429/500/503 by default) and lose ``drop_share``."""
        self.service.add_fault_mix(error_share, drop_share, codes)

    @control("DELETE", "faults")
    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self.service.clear_faults()

    @control(
        "POST",
        "failures",
        Option(
            "--fail-next-build",
            "make the next build fail after PHASE (repeatable, one build each); REASON is state.reason verbatim",
            parse_failure,
            "PHASE[:REASON]",
            repeat=True,
        ),
        Option(
            "--plan-failure",
            "plan build failures with the control API's body of POST /_emulator/failures (repeatable), e.g. "
            '\'{"phase": "TESTING", "step": "ApplyTestComponents", "step_message": "reboot test failed"}\'',
            parse_json_body("--plan-failure"),
            "JSON|@FILE",
            repeat=True,
        ),
    )
    def fail_next_builds(
        self,
        phase: str = "BUILDING",
        reason: str | None = None,
        count: int = 1,
        failure_context: dict[str, Any] | None = None,
        *,
        step: str | None = None,
        step_message: str | None = None,
        workflow_message: str | None = None,
    ) -> None:
        """Make the next ``count`` new builds end FAILED after ``phase``.

        In BUILDING, TESTING and DISTRIBUTING the phase's workflow fails in ``step`` (by default
        ApplyBuildComponents, ApplyTestComponents or DistributeImage) with ``step_message``; the workflow's message
        names the step, and ``state.reason`` reads like the service's: ``Workflow Execution ID: wf-... failed with
        reason: <workflow message>``.  ``reason`` replaces ``state.reason`` verbatim (and is the step's message
        unless ``step_message`` is given); ``failure_context`` replaces ``state.failureContext`` verbatim.
        """
        failure = PlannedFailure(phase, reason, failure_context, step, step_message, workflow_message)
        self.backend.fail_next_builds(failure, count)

    @control(
        "POST",
        "scan-findings",
        Option(
            "--scan-findings",
            "plan scan findings with the control API's body of POST /_emulator/scan-findings (repeatable), e.g. "
            '\'{"findings": [{"severity": "HIGH", "package_name": "openssl"}], "count": 1}\'',
            parse_json_body("--scan-findings"),
            "JSON|@FILE",
            repeat=True,
        ),
    )
    def plan_scan_findings(self, findings: list[dict[str, Any]], count: int = 1) -> None:
        """Give the next ``count`` builds these scan findings (``severity``, ``title``, ``package_name``, ...).

        ListImageScanFindings returns them once a build is AVAILABLE with image scanning enabled.
        """
        self.backend.plan_scan_findings(findings, count)

    @control(
        "POST",
        "denied-keys",
        Option(
            "--deny-access-key",
            f"answer every call signed with this access key with CODE (default {DENIED_CODE}, HTTP 403); repeatable",
            parse_denied_key,
            "ACCESS_KEY_ID[:CODE]",
            repeat=True,
        ),
    )
    def deny_access_key(
        self, access_key_id: str, code: str = DENIED_CODE, status: int | None = None, message: str | None = None
    ) -> None:
        """Answer every call signed with ``access_key_id`` with ``code`` (HTTP 403 by default), without running it.

        Revoked permissions or a deactivated key, as the caller meets them; other keys are answered as usual.
        """
        self.service.deny_access_key(access_key_id, code, status, message)

    @control("DELETE", "denied-keys")
    def allow_access_key(self, access_key_id: str | None = None) -> None:
        """Stop denying ``access_key_id`` (every denied key when None)."""
        self.service.allow_access_key(access_key_id)

    @control("GET", "denied-keys", reply="access_key_ids")
    def denied_access_keys(self) -> list[str]:
        """The access key ids currently denied."""
        return self.service.denied_access_keys()

    @control(
        "POST",
        "outage",
        Option(
            "--outage",
            "start in an outage: 'unavailable' answers 503 to every call, 'drop' closes every connection "
            "(end it with DELETE /_emulator/outage)",
            parse_outage,
            "{" + ",".join(OUTAGE_MODES) + "}",
        ),
    )
    def start_outage(self, mode: str = "unavailable") -> None:
        """Fail every call until :meth:`end_outage`: ``"unavailable"`` answers 503, ``"drop"`` closes connections.

        An outage comes before faults and denied keys; a dropped call is not processed (journaled as
        ``connection-dropped``).
        """
        self.service.start_outage(mode)

    @control("DELETE", "outage")
    def end_outage(self) -> None:
        """Answer calls again."""
        self.service.end_outage()

    @control("GET", "outage", reply="mode")
    def outage(self) -> str | None:
        """The current outage mode (``"unavailable"`` or ``"drop"``), None while the service answers."""
        return self.service.outage

    @control("POST", "hold", Option("--hold-builds", "keep new builds PENDING until released (DELETE /_emulator/hold)"))
    def hold_builds(self) -> None:
        """Keep builds started from now on PENDING (as at the account's build capacity) until released."""
        self.backend.hold_builds()

    @control("DELETE", "hold", reply="released")
    def release_builds(self) -> int:
        """Let held builds walk their phases from now on; returns how many were held."""
        return self.backend.release_builds()

    @control("POST", "image-scan-findings")
    def set_scan_findings(self, image_build_version_arn: str, findings: list[dict[str, Any]]) -> None:
        """Replace the scan findings of an existing build."""
        self.backend.set_scan_findings(image_build_version_arn, findings)

    @control("POST", "phases")
    def set_phase_seconds(self, seconds: Seconds | Mapping[str, Seconds]) -> None:
        """Phase durations of builds started from now on (one value, or a mapping per phase; a value is a number
        or a ``[low, high]`` range each build draws from)."""
        self.backend.set_phase_seconds(seconds)

    @control("POST", "visibility-delay")
    def set_visibility_delay(self, seconds: float) -> None:
        """GetImage answers not found for ``seconds`` after a build starts (eventual consistency)."""
        self.backend.set_visibility_delay(seconds)

    @control("POST", "strict")
    def set_strict(self, strict: bool = True) -> None:
        """Require the resources requests name to exist (``True``), or register them on first use."""
        self.backend.set_strict(strict)

    @control("POST", "distributions")
    def set_distribution_regions(self, distribution_configuration_arn: str, regions: list[str]) -> None:
        """Create or replace a distribution configuration with one AMI distribution per region, by its ARN (its
        regions follow CreateDistributionConfiguration's rules: AWS Regions, at least one, each once)."""
        self.backend.set_distribution_regions(distribution_configuration_arn, regions)

    @control("GET", "journal")
    def journal(self, operation: str | None = None) -> list[JournalEntry]:
        """Every call so far (of ``operation`` only, if given): token, ARN, outcome, request id, time."""
        return self.service.journal(operation)

    @control("GET", "images")
    def images(self) -> dict[str, str]:
        """Every image build version ARN with its current status."""
        return self.backend.statuses()

    def _events(self) -> EventPublisher:
        if self.events is None:
            raise RuntimeError(
                "the emulator sends no events; start it with events_endpoint_url (command line: --events-endpoint-url)"
            )
        return self.events

    @control("POST", "event-faults")
    def set_event_faults(self, drop_share: float = 0.0, delay: Seconds = 0.0, delay_share: float = 1.0) -> None:
        """Drop ``drop_share`` of state change events from now on, delay ``delay_share`` of the rest by ``delay``.

        ``delay`` is real seconds, a number or a ``[low, high]`` range; choices come from the emulator's seed.
        """
        self._events().set_faults(drop_share, delay, delay_share)

    @control("GET", "event-faults")
    def event_faults(self) -> dict[str, Any]:
        """The state change events' current ``drop_share``, ``delay`` (``[low, high]``) and ``delay_share``."""
        return self._events().faults()

    @control("GET", "events")
    def event_journal(self, image_build_version_arn: str | None = None) -> list[EventRecord]:
        """Every state change event so far (of one build, if given): sent, dropped, delayed or failed."""
        return self.events.journal(image_build_version_arn) if self.events is not None else []

    @control("POST", "events/flush", reply="flushed", waits="timeout")
    def flush_events(self, timeout: float = 10.0) -> bool:
        """Wait until every state change due by now is sent (delayed ones included); False on timeout."""
        return self._events().flush(timeout)

    @control("POST", "clock", reply="now")
    def advance(self, seconds: float) -> float:
        """Move the manual clock forward; returns the new clock time."""
        if not isinstance(self.backend.clock, ManualClock):
            raise RuntimeError("advance() needs ImageBuilderEmulator(clock=ManualClock()), not the real clock")
        return self.backend.clock.advance(seconds)


class EmulatorControl:
    """Drives an emulator in another process through its ``/_emulator/`` control API.

    Its methods are the controls of :class:`ImageBuilderEmulator`, with the same names, arguments and docstrings
    (see ``controls.py``); records (journal entries, events) come back as dictionaries of their fields.

    :param endpoint_url: the emulator's ``http://host:port``.
    """

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url.rstrip("/")

    if TYPE_CHECKING:  # the controls are attached below, from the table: type checkers of users' tests see them

        def __getattr__(self, name: str) -> Callable[..., Any]: ...

    def _call(self, method: str, command: str, body: Any = None, timeout: float = CONTROL_TIMEOUT) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.endpoint_url}{CONTROL_PREFIX}{command}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def healthy(self) -> bool:
        """Whether the emulator answers."""
        try:
            return bool(self._call("GET", "health")["ok"])
        except OSError:
            return False


for _name, _method in remote_methods(ImageBuilderEmulator).items():
    setattr(EmulatorControl, _name, _method)
