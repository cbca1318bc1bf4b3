"""Command line: ``python -m airflow_imagebuilder.testing --host H --port P [--strict] [faults ...]``.

Every control of :class:`~airflow_imagebuilder.testing.ImageBuilderEmulator` can be set at start-up; a running
emulator is driven with :class:`~airflow_imagebuilder.testing.EmulatorControl`.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from airflow_imagebuilder.testing.backend import phase_durations
from airflow_imagebuilder.testing.emulator import ImageBuilderEmulator
from airflow_imagebuilder.testing.events import delay_range
from airflow_imagebuilder.testing.resources import PHASES
from airflow_imagebuilder.testing.service import DENIED_CODE, OUTAGE_MODES


def parse_fault(text: str) -> dict[str, Any]:
    """``OPERATION:CODE[:key=value,...]`` or ``OPERATION:drop[:...]`` / ``OPERATION:latency=S`` as Fault fields.

    Examples: ``GetImage:CallRateLimitExceededException:count=3``, ``*:ServiceUnavailableException:probability=0.1``,
    ``CreateImage:drop:count=1``, ``GetImage:latency=5:count=1``.
    """
    operation, _, rest = text.partition(":")
    if not operation or not rest:
        raise argparse.ArgumentTypeError(f"--fault {text!r}: expected OPERATION:CODE[:key=value,...]")
    fault: dict[str, Any] = {"operation": operation}
    for part in rest.replace(",", ":").split(":"):
        key, has_value, value = part.partition("=")
        if not has_value:
            if key == "drop":
                fault["drop_response"] = True
            else:
                fault["code"] = key
        elif key in ("count", "status"):
            fault[key] = int(value)
        elif key in ("probability", "latency"):
            fault[key] = float(value)
        elif key == "message":
            fault[key] = value
        else:
            raise argparse.ArgumentTypeError(f"--fault {text!r}: unknown field {key!r}")
    return fault


def parse_phase_seconds(text: str) -> Any:
    """``S`` (every phase), ``LOW-HIGH`` (a range each build draws from) or a JSON object per phase.

    Examples: ``5``, ``2-10``, ``'{"BUILDING": [10, 50], "TESTING": 2}'``.
    """
    try:
        if text.lstrip().startswith("{"):
            value: Any = json.loads(text)
        elif "-" in text.strip().lstrip("-"):
            low, _, high = text.partition("-")
            value = [float(low), float(high)]
        else:
            value = float(text)
        phase_durations(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--phase-seconds {text!r}: {error}") from error
    return value


def parse_denied_key(text: str) -> dict[str, Any]:
    """``ACCESS_KEY_ID[:CODE]`` of a denied access key, as keyword arguments of ``deny_access_key``."""
    key, _, code = text.partition(":")
    if not key:
        raise argparse.ArgumentTypeError(f"--deny-access-key {text!r}: expected ACCESS_KEY_ID[:CODE]")
    return {"access_key_id": key, "code": code or DENIED_CODE}


def parse_event_delay(text: str) -> Any:
    """``S`` or ``LOW-HIGH`` real seconds a delayed state change event is held back."""
    try:
        low, dash, high = text.partition("-")
        value: Any = [float(low), float(high)] if dash else float(text)
        delay_range(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--event-delay {text!r}: {error}") from error
    return value


def parse_share(text: str) -> float:
    """A share between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a share between 0 and 1")
    return value


def parse_failure(text: str) -> dict[str, Any]:
    """``PHASE[:REASON]`` of a planned build failure, as keyword arguments of ``fail_next_builds``."""
    phase, _, reason = text.partition(":")
    if phase not in PHASES:
        raise argparse.ArgumentTypeError(f"--fail-next-build {text!r}: phase must be one of {', '.join(PHASES)}")
    return {"phase": phase, "reason": reason} if reason else {"phase": phase}


def parse_json_body(option: str, kind: type) -> Callable[[str], Any]:
    """A parser of a JSON value (or ``@file`` holding one) of type ``kind``: the body the control API takes."""

    def parse(text: str) -> Any:
        try:
            if text.startswith("@"):
                with open(text[1:], encoding="utf-8") as handle:
                    text = handle.read()
            value = json.loads(text)
        except (OSError, ValueError) as error:
            raise argparse.ArgumentTypeError(f"{option}: {error}") from error
        if not isinstance(value, kind):
            raise argparse.ArgumentTypeError(f"{option}: expected a JSON {kind.__name__}, got {text!r}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_imagebuilder.testing", description="Run the local EC2 Image Builder emulator."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5055, help="TCP port (default: 5055; 0 picks a free one)")
    parser.add_argument(
        "--phase-seconds",
        type=parse_phase_seconds,
        default=5.0,
        metavar="S|LOW-HIGH|JSON",
        help="seconds per lifecycle phase (default: 5): a number, a LOW-HIGH range each build draws its own "
        "duration from, or a JSON object per phase, e.g. '{\"BUILDING\": [10, 50]}'",
    )
    parser.add_argument("--account-id", default="123456789012", help="account id of emulated resources")
    parser.add_argument("--seed", type=int, default=0, help="seed for probabilistic faults")
    parser.add_argument(
        "--strict", action="store_true", help="require the resources a request names to exist (seed them first)"
    )
    parser.add_argument(
        "--visibility-delay", type=float, default=0.0, help="seconds GetImage answers not found after a build starts"
    )
    parser.add_argument(
        "--validate-responses", action="store_true", help="check every response against botocore's model"
    )
    parser.add_argument(
        "--fault",
        type=parse_fault,
        action="append",
        default=[],
        metavar="OP:CODE[:count=N,probability=P,latency=S]",
        help="inject a fault (repeatable), e.g. GetImage:CallRateLimitExceededException:count=3 or CreateImage:drop",
    )
    parser.add_argument(
        "--fault-mix",
        metavar="ERROR_SHARE[,DROP_SHARE]",
        help="answer this share of all calls with 429/500/503 and lose DROP_SHARE of responses, e.g. 0.2,0.05",
    )
    parser.add_argument(
        "--outage",
        choices=OUTAGE_MODES,
        help="start in an outage: 'unavailable' answers 503 to every call, 'drop' closes every connection "
        "(end it with DELETE /_emulator/outage)",
    )
    parser.add_argument(
        "--deny-access-key",
        type=parse_denied_key,
        action="append",
        default=[],
        metavar="ACCESS_KEY_ID[:CODE]",
        help=f"answer every call signed with this access key with CODE (default {DENIED_CODE}, HTTP 403); repeatable",
    )
    parser.add_argument(
        "--hold-builds",
        action="store_true",
        help="keep new builds PENDING until released (DELETE /_emulator/hold)",
    )
    parser.add_argument(
        "--fail-next-build",
        type=parse_failure,
        action="append",
        default=[],
        metavar="PHASE[:REASON]",
        help="make the next build fail after PHASE (repeatable, one build each); REASON is state.reason verbatim",
    )
    parser.add_argument(
        "--plan-failure",
        type=parse_json_body("--plan-failure", dict),
        action="append",
        default=[],
        metavar="JSON|@FILE",
        help="plan build failures with the control API's body of POST /_emulator/failures (repeatable), e.g. "
        '\'{"phase": "TESTING", "step": "ApplyTestComponents", "step_message": "reboot test failed"}\'',
    )
    parser.add_argument(
        "--scan-findings",
        type=parse_json_body("--scan-findings", dict),
        action="append",
        default=[],
        metavar="JSON|@FILE",
        help="plan scan findings with the control API's body of POST /_emulator/scan-findings (repeatable), e.g. "
        '\'{"findings": [{"severity": "HIGH", "package_name": "openssl"}], "count": 1}\'',
    )
    parser.add_argument(
        "--events-endpoint-url",
        metavar="URL",
        help="send Image Builder's state change event of every build's every status change to this EventBridge "
        "endpoint (e.g. moto server), on the default event bus",
    )
    parser.add_argument(
        "--event-drop-share", type=parse_share, default=0.0, help="share of state change events never sent (0 to 1)"
    )
    parser.add_argument(
        "--event-delay",
        type=parse_event_delay,
        default=0.0,
        metavar="S|LOW-HIGH",
        help="real seconds a delayed state change event is held back, or a range each draws from",
    )
    parser.add_argument(
        "--event-delay-share",
        type=parse_share,
        default=1.0,
        help="share of the events not dropped that --event-delay holds back (default: all)",
    )
    args = parser.parse_args(argv)
    emulator = ImageBuilderEmulator(
        host=args.host,
        port=args.port,
        phase_seconds=args.phase_seconds,
        strict=args.strict,
        account_id=args.account_id,
        seed=args.seed,
        visibility_delay=args.visibility_delay,
        validate_responses=args.validate_responses,
        events_endpoint_url=args.events_endpoint_url,
        event_drop_share=args.event_drop_share,
        event_delay=args.event_delay,
        event_delay_share=args.event_delay_share,
    )
    try:
        for fault in args.fault:
            emulator.add_fault(**fault)
        if args.fault_mix:
            error_share, _, drop_share = args.fault_mix.partition(",")
            emulator.add_fault_mix(float(error_share), float(drop_share or 0.0))
        for failure in args.fail_next_build + args.plan_failure:
            emulator.fail_next_builds(**failure)
        for planned in args.scan_findings:
            emulator.plan_scan_findings(**planned)
        for denied in args.deny_access_key:
            emulator.deny_access_key(**denied)
        if args.outage:
            emulator.start_outage(args.outage)
        if args.hold_builds:
            emulator.hold_builds()
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with emulator:
        mode = "strict" if args.strict else "lenient"
        print(f"Image Builder emulator ({mode} mode) listening on {emulator.endpoint_url}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
