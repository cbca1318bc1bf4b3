"""The wire layer of the emulator: Image Builder's rest-json protocol over HTTP/1.1, plus a small control API.

Routes (HTTP method and path per operation) come from botocore's service model.  Requests must carry a
well-formed SigV4 ``Authorization`` header whose credential scope names the ``imagebuilder`` service and an AWS
region, as the service's front door requires; that region is the caller's region.  Given ``credentials`` (access
key id -> secret key), the front door also checks the key, the request's date and the signature itself
(:func:`signature_refusal`); without them any well-formed signature passes, as with moto.  Each response goes out
in a single ``sendall`` on a socket with Nagle disabled, so keep-alive connections do not stall on delayed ACKs.
Everything the service decides lives behind :class:`~.service.EmulatedService`.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from airflow_imagebuilder.testing.controls import CONTROL_PREFIX
from airflow_imagebuilder.testing.errors import NOT_IMPLEMENTED_CODE
from airflow_imagebuilder.testing.service import EmulatedService, Outcome
from airflow_imagebuilder.testing.shapes import aws_regions, service_model

SIGV4 = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[A-Za-z0-9]+)/(?P<date>[0-9]{8})/(?P<region>[a-z0-9-]+)/"
    r"(?P<service>[a-z0-9-]+)/aws4_request, ?SignedHeaders=(?P<headers>[a-z0-9;.-]+), ?"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)
_DEFAULT_REGION = "us-east-1"
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
#: How far a request's ``X-Amz-Date`` may be from the service's clock (SigV4's rule).
MAX_CLOCK_SKEW = dt.timedelta(minutes=15)
_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access "
    "Key and signing method. Consult the service documentation for details."
)


def signature_refusal(
    signature: re.Match[str],
    method: str,
    path: str,
    headers: Message,
    body: bytes,
    credentials: Mapping[str, str] | None,
    now: dt.datetime,
) -> tuple[str, str] | None:
    """The front door's (error code, message) for a well-formed SigV4 request it turns away; None to let it in.

    Always: the credential scope must name the ``imagebuilder`` service and an AWS region.  With ``credentials``:
    the access key must be one of them, ``X-Amz-Date`` within :data:`MAX_CLOCK_SKEW` of ``now``, and the
    signature the one botocore's own signer computes from the request as received (so a wrong secret key and a
    body changed after signing both fail).
    """
    if signature["service"] != "imagebuilder":
        return "InvalidSignatureException", "Credential should be scoped to correct service: 'imagebuilder'. "
    if signature["region"] not in aws_regions():
        return "InvalidSignatureException", "Credential should be scoped to a valid region. "
    if credentials is None:
        return None
    secret = credentials.get(signature["key"])
    if secret is None:
        return "UnrecognizedClientException", "The security token included in the request is invalid."
    stamp = headers.get("X-Amz-Date", "")
    try:
        signed_at = dt.datetime.strptime(stamp, _AMZ_DATE).replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return "IncompleteSignatureException", "Authorization header requires existence of a 'X-Amz-Date' header."
    if signed_at < now - MAX_CLOCK_SKEW:
        return "InvalidSignatureException", (
            f"Signature expired: {stamp} is now earlier than {(now - MAX_CLOCK_SKEW):{_AMZ_DATE}} "
            f"({now:{_AMZ_DATE}} - 15 min.)"
        )
    if signed_at > now + MAX_CLOCK_SKEW:
        return "InvalidSignatureException", (
            f"Signature not yet current: {stamp} is still later than {(now + MAX_CLOCK_SKEW):{_AMZ_DATE}} "
            f"({now:{_AMZ_DATE}} + 15 min.)"
        )
    signed = {name: headers.get(name, "") for name in signature["headers"].split(";")}
    request = AWSRequest(method=method, url=f"http://{headers.get('Host', '')}{path}", data=body, headers=signed)
    request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(signature["key"], secret), signature["service"], signature["region"])
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if not hmac.compare_digest(expected, signature["signature"]):
        return "InvalidSignatureException", _MISMATCH
    return None


def model_routes() -> dict[tuple[str, str], str]:
    """(HTTP method, path) of every operation of the service model."""
    model = service_model()
    routes = {}
    for name in model.operation_names:
        http = model.operation_model(name).http
        routes[(http["method"], http["requestUri"].split("?")[0])] = name
    return routes


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
        service = self.server.service
        operation = self.server.routes.get((method, url.path))
        if operation is None:
            self._send(404, {"message": f"No operation at {method} {url.path}"}, "none", "UnknownOperationException")
            return
        signature = SIGV4.match(self.headers.get("Authorization", ""))
        region = signature["region"] if signature else _DEFAULT_REGION
        key = signature["key"] if signature else None
        refusal: tuple[str, str] | None
        if "Authorization" not in self.headers:
            refusal = ("MissingAuthenticationTokenException", "Missing Authentication Token")
        elif signature is None:
            refusal = (
                "IncompleteSignatureException",
                "Authorization header requires a SigV4 'Credential' (<key>/<date>/<region>/imagebuilder/aws4_request), "
                "'SignedHeaders' and 'Signature' parameters.",
            )
        else:
            now = dt.datetime.now(dt.timezone.utc)
            refusal = signature_refusal(signature, method, self.path, self.headers, raw, self.server.credentials, now)
        outcome: Outcome
        if refusal is not None:
            outcome = service.refuse(operation, region, *refusal, access_key_id=key)
        elif operation not in service.backend.operations:
            self._send(
                501,
                {"message": f"The Image Builder emulator does not implement the {operation} operation"},
                "none",
                NOT_IMPLEMENTED_CODE,
            )
            return
        else:
            params = body if isinstance(body, dict) else {}
            for name, values in parse_qs(url.query).items():
                params[name] = values[-1]
            outcome = service.handle(operation, region, params, key)
        if outcome.latency:
            time.sleep(outcome.latency)
        if outcome.drop_response or outcome.drop_connection:
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
        action = self.server.controls.get((method, command))
        if action is None:
            self._send(404, {"message": f"No control command {method} {command}"}, "control")
            return
        try:
            result = action(body if isinstance(body, dict) else {})
        except (TypeError, ValueError, KeyError, RuntimeError) as error:
            self._send(400, {"message": f"{command}: {error}"}, "control")
            return
        self._send(200, {"ok": True} if result is None else result, "control")


class EmulatorHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server bound to one :class:`~.service.EmulatedService` and the emulator's controls."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        service: EmulatedService,
        controls: Mapping[tuple[str, str], Callable[[dict[str, Any]], Any]],
        credentials: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(address, _Handler)
        self.service = service
        #: Access key id -> secret key of the callers whose signatures are verified; None accepts any signature.
        self.credentials = dict(credentials) if credentials is not None else None
        self.routes = model_routes()
        #: The control API (see ``controls.py``): (HTTP method, path) -> the control, called with the body.
        self.controls = {("GET", "health"): lambda body: {"ok": True}, **controls}

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        return thread
