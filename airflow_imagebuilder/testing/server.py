"""The wire layer of the emulator: Image Builder's rest-json protocol over HTTP/1.1, plus a small control API.

Each response goes out in a single ``sendall`` on a socket with Nagle disabled, so keep-alive connections do not
stall on delayed ACKs.  Everything the service decides lives in :class:`~.state.EmulatorState`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from airflow_imagebuilder.testing.clock import ManualClock
from airflow_imagebuilder.testing.state import EmulatorState, Fault, Outcome

#: (HTTP method, path) of each operation, as in botocore's service model.
ROUTES: dict[tuple[str, str], str] = {
    ("PUT", "/CreateImage"): "CreateImage",
    ("GET", "/GetImage"): "GetImage",
    ("PUT", "/CancelImageCreation"): "CancelImageCreation",
    ("POST", "/ListImageBuildVersions"): "ListImageBuildVersions",
}
CONTROL_PREFIX = "/_emulator/"
_CREDENTIAL_SCOPE = re.compile(r"Credential=(?P<key>[^/]+)/\d{8}/(?P<region>[^/]+)/")
_DEFAULT_REGION = "us-east-1"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EmulatorHTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging; the journal records every call."""

    def do_GET(self) -> None:
        self._serve("GET")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            self._send(400, {"message": "Request body is not valid JSON"}, "bad-json", "SerializationException")
            return
        if url.path.startswith(CONTROL_PREFIX):
            self._control(method, url.path[len(CONTROL_PREFIX) :], body)
            return
        operation = ROUTES.get((method, url.path))
        if operation is None:
            self._send(404, {"message": f"No operation at {method} {url.path}"}, "none", "UnknownOperationException")
            return
        params = body if isinstance(body, dict) else {}
        for name, values in parse_qs(url.query).items():
            params[name] = values[-1]
        match = _CREDENTIAL_SCOPE.search(self.headers.get("Authorization", ""))
        region = match["region"] if match else _DEFAULT_REGION
        outcome: Outcome = self.server.state.handle(operation, region, params, match["key"] if match else None)
        if outcome.latency:
            time.sleep(outcome.latency)
        if outcome.drop_response:
            # The call was processed; the caller never hears back (a lost response).
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(outcome.status, outcome.body, outcome.request_id, outcome.error_code)

    def _send(self, status: int, body: Any, request_id: str, error_code: str | None = None) -> None:
        payload = json.dumps(body, separators=(",", ":")).encode()
        reason = self.responses.get(status, ("",))[0]
        head = [
            f"HTTP/1.1 {status} {reason}",
            "Content-Type: application/json",
            f"Content-Length: {len(payload)}",
            f"x-amzn-RequestId: {request_id}",
        ]
        if error_code:
            head.append(f"x-amzn-ErrorType: {error_code}")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)

    def _control(self, method: str, command: str, body: Any) -> None:
        state = self.server.state
        try:
            result: Any = {"ok": True}
            if (method, command) == ("GET", "health"):
                pass
            elif (method, command) == ("GET", "journal"):
                result = [dataclasses.asdict(entry) for entry in state.journal()]
            elif (method, command) == ("GET", "images"):
                result = state.statuses()
            elif (method, command) == ("POST", "faults"):
                state.add_fault(Fault(**body))
            elif (method, command) == ("POST", "fault-mix"):
                state.add_fault_mix(**body)
            elif (method, command) == ("DELETE", "faults"):
                state.clear_faults()
            elif (method, command) == ("POST", "phases"):
                state.set_phase_seconds(body["seconds"])
            elif (method, command) == ("POST", "failures"):
                state.fail_next_builds(**body)
            elif (method, command) == ("POST", "distributions"):
                state.set_distribution_regions(body["distribution_configuration_arn"], body["regions"])
            elif (method, command) == ("POST", "clock"):
                if not isinstance(state.clock, ManualClock):
                    raise ValueError("the emulator runs on the real clock; start it with a manual clock to advance")
                result = {"now": state.clock.advance(float(body["advance"]))}
            else:
                self._send(404, {"message": f"No control command {method} {command}"}, "control")
                return
        except (TypeError, ValueError, KeyError) as error:
            self._send(400, {"message": f"{command}: {error}"}, "control")
            return
        self._send(200, result, "control")


class EmulatorHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server bound to one :class:`EmulatorState`."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: EmulatorState) -> None:
        super().__init__(address, _Handler)
        self.state = state

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        return thread
