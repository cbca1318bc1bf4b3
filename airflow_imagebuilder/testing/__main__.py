"""Command line: ``python -m airflow_imagebuilder.testing --host H --port P [--strict] [faults ...]``.

The options are the emulator's settings (its constructor's arguments) and the options of its controls, which
apply them at start-up (each control names its own: see ``controls.py``); a running emulator is driven with
:class:`~airflow_imagebuilder.testing.EmulatorControl`.
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
from airflow_imagebuilder.testing.clock import seconds_range
from airflow_imagebuilder.testing.controls import controls_of
from airflow_imagebuilder.testing.emulator import ImageBuilderEmulator


def parse_seconds(option: str, check: Callable[[Any], object]) -> Callable[[str], Any]:
    """A parser of ``S``, ``LOW-HIGH`` (a range each use draws from) or a JSON object, which ``check`` accepts.

    Examples: ``5``, ``2-10``, ``'{"BUILDING": [10, 50], "TESTING": 2}'``.
    """

    def parse(text: str) -> Any:
        try:
            if text.lstrip().startswith("{"):
                value: Any = json.loads(text)
            elif "-" in text.strip().lstrip("-"):
                low, _, high = text.partition("-")
                value = [float(low), float(high)]
            else:
                value = float(text)
            check(value)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"{option} {text!r}: {error}") from error
        return value

    return parse


#: Seconds per phase: a number, a range or a JSON object per phase.
parse_phase_seconds = parse_seconds("--phase-seconds", phase_durations)
#: Real seconds a delayed state change event is held back: a number or a range.
parse_event_delay = parse_seconds("--event-delay", lambda value: seconds_range("event_delay", value))


def parse_share(text: str) -> float:
    """A share between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a share between 0 and 1")
    return value


def parse_credentials(text: str) -> tuple[str, str]:
    """``ACCESS_KEY_ID:SECRET_ACCESS_KEY``."""
    key, _, secret = text.partition(":")
    if not key or not secret:
        raise argparse.ArgumentTypeError(f"--credentials {text!r}: expected ACCESS_KEY_ID:SECRET_ACCESS_KEY")
    return key, secret


def command_line(emulator_class: type[ImageBuilderEmulator] = ImageBuilderEmulator) -> argparse.ArgumentParser:
    """The options: where to serve, the emulator's settings, then the options of its controls."""
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
        "--advance-on-poll",
        action="store_true",
        help="move a build one phase each time GetImage sees it in progress, and never with time",
    )
    parser.add_argument(
        "--validate-responses", action="store_true", help="check every response against botocore's model"
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
    parser.add_argument(
        "--credentials",
        type=parse_credentials,
        action="append",
        metavar="ACCESS_KEY_ID:SECRET",
        help="verify every request's SigV4 signature against these credentials (repeatable); by default any "
        "well-formed signature is accepted",
    )
    for entry in controls_of(emulator_class):
        for option in entry.options:
            if option.parse is None:
                parser.add_argument(option.flag, dest=option.dest, action="append_const", const={}, help=option.help)
            else:
                parser.add_argument(
                    option.flag,
                    dest=option.dest,
                    type=option.parse,
                    action="append",
                    metavar=option.metavar,
                    help=option.help,
                )
    return parser


def configured_emulator(
    argv: list[str] | None = None, emulator_class: type[ImageBuilderEmulator] = ImageBuilderEmulator
) -> tuple[ImageBuilderEmulator, argparse.Namespace]:
    """The emulator the command line describes, its controls applied (not started yet), and the parsed options."""
    parser = command_line(emulator_class)
    args = parser.parse_args(argv)
    emulator = emulator_class(
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
        credentials=dict(args.credentials) if args.credentials else None,
        advance_on_poll=args.advance_on_poll,
    )
    try:
        for entry in controls_of(emulator_class):
            for option in entry.options:
                given = getattr(args, option.dest) or []
                for arguments in given if option.repeat else given[-1:]:
                    getattr(emulator, entry.name)(**arguments)
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    return emulator, args


def main(argv: list[str] | None = None) -> int:
    emulator, args = configured_emulator(argv)
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
