"""The emulator's two handles: :class:`ImageBuilderEmulator` in-process, :class:`EmulatorControl` for another process.

Both offer the same controls (faults, fault mixes, outages, denied access keys, planned failures naming a workflow
step, planned scan findings, phase durations, held builds, visibility delay, strict mode, the journal); the command
line (``python -m
airflow_imagebuilder.testing``) sets them at start-up.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Mapping
from typing import Any

from airflow_imagebuilder.testing.backend import ImageBuilderBackend, PhaseLength
from airflow_imagebuilder.testing.clock import ManualClock, RealClock
from airflow_imagebuilder.testing.events import EventDelay, EventPublisher, EventRecord, event_controls
from airflow_imagebuilder.testing.server import EmulatorHTTPServer
from airflow_imagebuilder.testing.service import (
    DENIED_CODE,
    FAULT_MIX_CODES,
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
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        phase_seconds: PhaseLength | Mapping[str, PhaseLength] = 1.0,
        clock: RealClock | ManualClock | None = None,
        *,
        strict: bool = False,
        account_id: str = "123456789012",
        seed: int = 0,
        visibility_delay: float = 0.0,
        validate_responses: bool = False,
        events_endpoint_url: str | None = None,
        event_drop_share: float = 0.0,
        event_delay: EventDelay = 0.0,
        event_delay_share: float = 1.0,
    ) -> None:
        self.backend = ImageBuilderBackend(
            clock=clock,
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
        self._server = EmulatorHTTPServer(self._address, self.service)
        self._server.controls.update(event_controls(self.events))
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

    def add_fault(self, operation: str = "*", **fault: Any) -> Fault:
        """Inject a fault into calls of ``operation`` (``"*"`` for all); keyword arguments as :class:`Fault`."""
        return self.service.add_fault(Fault(operation=operation, **fault))

    def add_fault_mix(
        self, error_share: float, drop_share: float = 0.0, codes: tuple[str, ...] | list[str] = FAULT_MIX_CODES
    ) -> None:
        """Answer ``error_share`` of all calls with ``codes`` (429/500/503 by default) and lose ``drop_share``."""
        self.service.add_fault_mix(error_share, drop_share, codes)

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self.service.clear_faults()

    def start_outage(self, mode: str = "unavailable") -> None:
        """Fail every call until :meth:`end_outage`: ``"unavailable"`` answers 503, ``"drop"`` closes connections.

        An outage comes before faults and denied keys; a dropped call is not processed (journaled as
        ``connection-dropped``).
        """
        self.service.start_outage(mode)

    def end_outage(self) -> None:
        """Answer calls again."""
        self.service.end_outage()

    def deny_access_key(
        self, access_key_id: str, code: str = DENIED_CODE, status: int | None = None, message: str | None = None
    ) -> None:
        """Answer every call signed with ``access_key_id`` with ``code`` (HTTP 403 by default), without running it.

        Revoked permissions or a deactivated key, as the caller meets them; other keys are answered as usual.
        """
        self.service.deny_access_key(access_key_id, code, status, message)

    def allow_access_key(self, access_key_id: str | None = None) -> None:
        """Stop denying ``access_key_id`` (every denied key when None)."""
        self.service.allow_access_key(access_key_id)

    def hold_builds(self) -> None:
        """Keep builds started from now on PENDING (as at the account's build capacity) until released."""
        self.backend.hold_builds()

    def release_builds(self) -> int:
        """Let held builds walk their phases from now on; returns how many were held."""
        return self.backend.release_builds()

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
        """Make the next ``count`` builds end FAILED after ``phase``, the phase's workflow failing in ``step``.

        ``state.reason`` reads like the service's (``Workflow Execution ID: wf-... failed with reason: ...``)
        unless ``reason`` gives it verbatim; see :meth:`ImageBuilderBackend.fail_next_builds`.
        """
        self.backend.fail_next_builds(
            phase,
            reason,
            count,
            failure_context,
            step=step,
            step_message=step_message,
            workflow_message=workflow_message,
        )

    def plan_scan_findings(self, findings: list[dict[str, Any]], count: int = 1) -> None:
        """Give the next ``count`` builds these scan findings (``severity``, ``title``, ``package_name``, ...).

        ListImageScanFindings returns them once a build is AVAILABLE with image scanning enabled.
        """
        self.backend.plan_scan_findings(findings, count)

    def set_scan_findings(self, image_build_version_arn: str, findings: list[dict[str, Any]]) -> None:
        """Replace the scan findings of an existing build."""
        self.backend.set_scan_findings(image_build_version_arn, findings)

    def set_phase_seconds(self, seconds: PhaseLength | Mapping[str, PhaseLength]) -> None:
        """Phase durations of builds started from now on (one value, or a mapping per phase; a value is a number
        or a ``[low, high]`` range each build draws from)."""
        self.backend.set_phase_seconds(seconds)

    def set_visibility_delay(self, seconds: float) -> None:
        """GetImage answers not found for ``seconds`` after a build starts (eventual consistency)."""
        self.backend.set_visibility_delay(seconds)

    def set_strict(self, strict: bool = True) -> None:
        """Require the resources requests name to exist (``True``), or register them on first use."""
        self.backend.set_strict(strict)

    def set_distribution_regions(self, distribution_configuration_arn: str, regions: list[str]) -> None:
        """Create or replace a distribution configuration with one AMI distribution per region, by its ARN."""
        self.backend.set_distribution_regions(distribution_configuration_arn, regions)

    def journal(self, operation: str | None = None) -> list[JournalEntry]:
        """Every call so far (of ``operation`` only, if given): token, ARN, outcome, request id, time."""
        return self.service.journal(operation)

    def images(self) -> dict[str, str]:
        """Every image build version ARN with its current status."""
        return self.backend.statuses()

    def _events(self) -> EventPublisher:
        if self.events is None:
            raise RuntimeError("the emulator sends no events; use ImageBuilderEmulator(events_endpoint_url=...)")
        return self.events

    def set_event_faults(self, drop_share: float = 0.0, delay: EventDelay = 0.0, delay_share: float = 1.0) -> None:
        """Drop ``drop_share`` of state change events from now on, delay ``delay_share`` of the rest by ``delay``.

        ``delay`` is real seconds, a number or a ``[low, high]`` range; choices come from the emulator's seed.
        """
        self._events().set_faults(drop_share, delay, delay_share)

    def event_journal(self, image_build_version_arn: str | None = None) -> list[EventRecord]:
        """Every state change event so far (of one build, if given): sent, dropped, delayed or failed."""
        return self.events.journal(image_build_version_arn) if self.events is not None else []

    def flush_events(self, timeout: float = 10.0) -> bool:
        """Wait until every state change due by now is sent (delayed ones included); False on timeout."""
        return self._events().flush(timeout)

    def advance(self, seconds: float) -> float:
        """Move the manual clock forward; returns the new clock time."""
        if not isinstance(self.backend.clock, ManualClock):
            raise RuntimeError("advance() needs ImageBuilderEmulator(clock=ManualClock())")
        return self.backend.clock.advance(seconds)


class EmulatorControl:
    """Drives an emulator in another process through its ``/_emulator/`` control API.

    :param endpoint_url: the emulator's ``http://host:port``.
    """

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url.rstrip("/")

    def _call(self, method: str, command: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.endpoint_url}/_emulator/{command}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def healthy(self) -> bool:
        """Whether the emulator answers."""
        try:
            return bool(self._call("GET", "health")["ok"])
        except OSError:
            return False

    def journal(self, operation: str | None = None) -> list[dict[str, Any]]:
        """Every call so far (of ``operation`` only, if given), as dictionaries of :class:`JournalEntry` fields."""
        entries = self._call("GET", "journal")
        return [entry for entry in entries if operation is None or entry["operation"] == operation]

    def images(self) -> dict[str, str]:
        """Every image build version ARN with its current status."""
        return dict(self._call("GET", "images"))

    def set_event_faults(self, drop_share: float = 0.0, delay: EventDelay = 0.0, delay_share: float = 1.0) -> None:
        """Drop ``drop_share`` of state change events from now on, delay ``delay_share`` of the rest by ``delay``."""
        seconds = delay if isinstance(delay, (int, float)) else list(delay)
        self._call("POST", "event-faults", {"drop_share": drop_share, "delay": seconds, "delay_share": delay_share})

    def event_journal(self, image_build_version_arn: str | None = None) -> list[dict[str, Any]]:
        """Every state change event so far (of one build, if given), as dictionaries of :class:`EventRecord` fields."""
        records = self._call("GET", "events")
        return [
            record
            for record in records
            if image_build_version_arn is None or record["image_build_version_arn"] == image_build_version_arn
        ]

    def flush_events(self, timeout: float = 10.0) -> bool:
        """Wait until every state change due by now is sent (delayed ones included); False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if self._call("POST", "events/flush", {"timeout": max(0.0, min(remaining, 5.0))})["flushed"]:
                return True
            if remaining <= 5.0:
                return False

    def add_fault(self, operation: str = "*", **fault: Any) -> None:
        """Inject a fault into calls of ``operation``; keyword arguments as :class:`Fault`."""
        self._call("POST", "faults", {"operation": operation, **fault})

    def add_fault_mix(
        self, error_share: float, drop_share: float = 0.0, codes: tuple[str, ...] | list[str] = FAULT_MIX_CODES
    ) -> None:
        """Answer ``error_share`` of all calls with ``codes`` and lose ``drop_share`` of responses."""
        self._call("POST", "fault-mix", {"error_share": error_share, "drop_share": drop_share, "codes": list(codes)})

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self._call("DELETE", "faults")

    def start_outage(self, mode: str = "unavailable") -> None:
        """Fail every call until :meth:`end_outage`: ``"unavailable"`` answers 503, ``"drop"`` closes connections."""
        self._call("POST", "outage", {"mode": mode})

    def end_outage(self) -> None:
        """Answer calls again."""
        self._call("DELETE", "outage")

    def deny_access_key(
        self, access_key_id: str, code: str = DENIED_CODE, status: int | None = None, message: str | None = None
    ) -> None:
        """Answer every call signed with ``access_key_id`` with ``code`` (HTTP 403 by default), without running it."""
        body: dict[str, Any] = {"access_key_id": access_key_id, "code": code}
        body |= {key: value for key, value in (("status", status), ("message", message)) if value is not None}
        self._call("POST", "denied-keys", body)

    def allow_access_key(self, access_key_id: str | None = None) -> None:
        """Stop denying ``access_key_id`` (every denied key when None)."""
        self._call("DELETE", "denied-keys", {"access_key_id": access_key_id})

    def hold_builds(self) -> None:
        """Keep builds started from now on PENDING (as at the account's build capacity) until released."""
        self._call("POST", "hold", {})

    def release_builds(self) -> int:
        """Let held builds walk their phases from now on; returns how many were held."""
        return int(self._call("DELETE", "hold")["released"])

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
        """Make the next ``count`` builds end FAILED after ``phase``, the phase's workflow failing in ``step``."""
        body: dict[str, Any] = {"phase": phase, "count": count}
        optional = {
            "reason": reason,
            "failure_context": failure_context,
            "step": step,
            "step_message": step_message,
            "workflow_message": workflow_message,
        }
        body |= {key: value for key, value in optional.items() if value is not None}
        self._call("POST", "failures", body)

    def plan_scan_findings(self, findings: list[dict[str, Any]], count: int = 1) -> None:
        """Give the next ``count`` builds these scan findings (``severity``, ``title``, ``package_name``, ...)."""
        self._call("POST", "scan-findings", {"findings": findings, "count": count})

    def set_scan_findings(self, image_build_version_arn: str, findings: list[dict[str, Any]]) -> None:
        """Replace the scan findings of an existing build."""
        self._call(
            "POST", "image-scan-findings", {"image_build_version_arn": image_build_version_arn, "findings": findings}
        )

    def set_phase_seconds(self, seconds: PhaseLength | Mapping[str, PhaseLength]) -> None:
        """Phase durations of builds started from now on (numbers or ``[low, high]`` ranges)."""
        self._call("POST", "phases", {"seconds": dict(seconds) if isinstance(seconds, Mapping) else seconds})

    def set_visibility_delay(self, seconds: float) -> None:
        """GetImage answers not found for ``seconds`` after a build starts."""
        self._call("POST", "visibility-delay", {"seconds": seconds})

    def set_strict(self, strict: bool = True) -> None:
        """Require the resources requests name to exist (``True``), or register them on first use."""
        self._call("POST", "strict", {"strict": strict})

    def set_distribution_regions(self, distribution_configuration_arn: str, regions: list[str]) -> None:
        """Create or replace a distribution configuration with one AMI distribution per region, by its ARN."""
        self._call(
            "POST",
            "distributions",
            {"distribution_configuration_arn": distribution_configuration_arn, "regions": regions},
        )

    def advance(self, seconds: float) -> float:
        """Move a manual clock forward (the emulator must run on one); returns the new clock time."""
        return float(self._call("POST", "clock", {"seconds": seconds})["now"])
