"""A local EC2 Image Builder service for tests and demos (moto and LocalStack have no Image Builder).

Usage::

    from airflow_imagebuilder.testing import ImageBuilderEmulator

    with ImageBuilderEmulator(phase_seconds=0.5) as emulator:
        client = boto3.client("imagebuilder", endpoint_url=emulator.endpoint_url, region_name="us-east-1")

The emulator speaks the service's rest-json protocol for CreateImage, GetImage, CancelImageCreation and
ListImageBuildVersions.  State, lifecycle, faults and the journal live in :class:`EmulatorState`; the
:class:`EmulatorControl` client drives an emulator running in another process through its control API.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping
from typing import Any

from airflow_imagebuilder.testing.clock import ManualClock, RealClock
from airflow_imagebuilder.testing.server import EmulatorHTTPServer
from airflow_imagebuilder.testing.state import PHASES, EmulatorState, Fault, JournalEntry

__all__ = [
    "PHASES",
    "EmulatorControl",
    "EmulatorState",
    "Fault",
    "ImageBuilderEmulator",
    "JournalEntry",
    "ManualClock",
    "RealClock",
]


class ImageBuilderEmulator:
    """Run the emulated service on ``host:port`` (``port=0`` picks a free one) for the ``with`` block.

    :param host: address to bind; loopback unless told otherwise.
    :param port: TCP port, 0 for any free port.
    :param phase_seconds: seconds per lifecycle phase (one number or a mapping per phase).
    :param clock: a :class:`ManualClock` for tests that advance time; real time by default.
    :param other keyword arguments: passed to :class:`EmulatorState` (``account_id``, ``seed``,
        ``visibility_delay``, ``validate_responses``).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        phase_seconds: float | Mapping[str, float] = 1.0,
        clock: RealClock | ManualClock | None = None,
        **state_options: Any,
    ) -> None:
        self.state = EmulatorState(clock=clock, phase_seconds=phase_seconds, **state_options)
        self._address = (host, port)
        self._server: EmulatorHTTPServer | None = None

    def start(self) -> ImageBuilderEmulator:
        self._server = EmulatorHTTPServer(self._address, self.state)
        self._server.serve_in_thread()
        return self

    def stop(self) -> None:
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
        if self._server is None:
            raise RuntimeError("ImageBuilderEmulator is not running; use it as a context manager or call start()")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # Convenience pass-throughs to the state, so tests read naturally.
    def add_fault(self, operation: str = "*", **fault: Any) -> Fault:
        return self.state.add_fault(Fault(operation=operation, **fault))

    def add_fault_mix(self, error_share: float, drop_share: float = 0.0) -> None:
        self.state.add_fault_mix(error_share, drop_share)

    def clear_faults(self) -> None:
        self.state.clear_faults()

    def fail_next_builds(self, phase: str = "BUILDING", reason: str = "Build failed", count: int = 1) -> None:
        self.state.fail_next_builds(phase, reason, count)

    def journal(self, operation: str | None = None) -> list[JournalEntry]:
        return self.state.journal(operation)

    def advance(self, seconds: float) -> float:
        if not isinstance(self.state.clock, ManualClock):
            raise RuntimeError("advance() needs ImageBuilderEmulator(clock=ManualClock())")
        return self.state.clock.advance(seconds)


class EmulatorControl:
    """Drives an emulator in another process through its ``/_emulator/`` control API."""

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
        try:
            return bool(self._call("GET", "health")["ok"])
        except OSError:
            return False

    def journal(self, operation: str | None = None) -> list[dict[str, Any]]:
        entries = self._call("GET", "journal")
        return [entry for entry in entries if operation is None or entry["operation"] == operation]

    def images(self) -> dict[str, str]:
        return dict(self._call("GET", "images"))

    def add_fault(self, operation: str = "*", **fault: Any) -> None:
        self._call("POST", "faults", {"operation": operation, **fault})

    def add_fault_mix(self, error_share: float, drop_share: float = 0.0) -> None:
        self._call("POST", "fault-mix", {"error_share": error_share, "drop_share": drop_share})

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def fail_next_builds(self, phase: str = "BUILDING", reason: str = "Build failed", count: int = 1) -> None:
        self._call("POST", "failures", {"phase": phase, "reason": reason, "count": count})

    def set_phase_seconds(self, seconds: float | dict[str, float]) -> None:
        self._call("POST", "phases", {"seconds": seconds})

    def set_distribution_regions(self, distribution_configuration_arn: str, regions: list[str]) -> None:
        self._call(
            "POST",
            "distributions",
            {"distribution_configuration_arn": distribution_configuration_arn, "regions": regions},
        )
