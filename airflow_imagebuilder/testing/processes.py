"""Local services as child processes: the emulator and moto server, on free loopback ports.

Used by the demo and by tests that run Airflow's own processes (scheduler, triggerer, workers), which must
reach the services over the network rather than in-process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ServiceProcess:
    """A child process serving HTTP on ``host:port``; started and health-checked as a context manager."""

    def __init__(self, name: str, command: list[str], port: int, health_path: str, log_dir: Path | None = None):
        self.name = name
        self.command = command
        self.port = port
        self.health_path = health_path
        self.log_path = (log_dir or Path(os.environ.get("TMPDIR", "/tmp"))) / f"{name}-{port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.endpoint_url + self.health_path, timeout=2):
                    return self
            except urllib.error.HTTPError:
                return self  # it answers HTTP: it is up
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer on {self.endpoint_url} within {timeout}s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def emulator_process(
    phase_seconds: float | Mapping[str, Any] = 2.0,
    port: int | None = None,
    log_dir: Path | None = None,
    strict: bool = False,
    events_endpoint_url: str | None = None,
) -> ServiceProcess:
    """The Image Builder emulator CLI as a child process (``strict``: resources must be created first).

    ``events_endpoint_url``: send every build's state change events to this EventBridge endpoint (moto server).

    ``phase_seconds`` is one number, or a mapping per phase whose values are numbers or ``[low, high]`` ranges.
    """
    port = port or free_port()
    phases = json.dumps(dict(phase_seconds)) if isinstance(phase_seconds, Mapping) else str(phase_seconds)
    command = [sys.executable, "-m", "airflow_imagebuilder.testing", "--port", str(port), "--phase-seconds", phases]
    if strict:
        command.append("--strict")
    if events_endpoint_url:
        command += ["--events-endpoint-url", events_endpoint_url]
    return ServiceProcess("imagebuilder-emulator", command, port, "/_emulator/health", log_dir)


def moto_process(port: int | None = None, log_dir: Path | None = None) -> ServiceProcess:
    """moto in server mode (SSM, EC2, STS, SQS, ...)."""
    port = port or free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    return ServiceProcess("moto", command, port, "/moto-api/", log_dir)


def local_client(service: str, endpoint_url: str, region: str = "us-east-1", config: Any = None) -> Any:
    """A boto3 client for a local service (emulator or moto), with throwaway credentials and botocore ``config``."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config,
    )


def aws_connection_uri(
    imagebuilder_endpoint: str,
    other_endpoint: str | None = None,
    region: str = "us-east-1",
    *,
    access_key_id: str = "testing",
    **extra: Any,
) -> str:
    """JSON for an ``AIRFLOW_CONN_*`` variable: Image Builder at the emulator, other services at moto.

    ``access_key_id`` is the connection's login; give it one of its own to deny it alone in the emulator.
    """
    conn_extra: dict[str, Any] = {
        "region_name": region,
        "service_config": {"imagebuilder": {"endpoint_url": imagebuilder_endpoint}},
        **extra,
    }
    if other_endpoint:
        conn_extra["endpoint_url"] = other_endpoint
    return json.dumps({"conn_type": "aws", "login": access_key_id, "password": "testing", "extra": conn_extra})
