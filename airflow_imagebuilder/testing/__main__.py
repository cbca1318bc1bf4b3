"""Command line: ``python -m airflow_imagebuilder.testing --host H --port P [--phase-seconds S]``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from airflow_imagebuilder.testing import ImageBuilderEmulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_imagebuilder.testing", description="Run the local EC2 Image Builder emulator."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5055, help="TCP port (default: 5055; 0 picks a free one)")
    parser.add_argument("--phase-seconds", type=float, default=5.0, help="seconds per lifecycle phase (default: 5)")
    parser.add_argument("--account-id", default="123456789012", help="account id of emulated images")
    parser.add_argument("--seed", type=int, default=0, help="seed for probabilistic faults")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with ImageBuilderEmulator(
        host=args.host, port=args.port, phase_seconds=args.phase_seconds, account_id=args.account_id, seed=args.seed
    ) as emulator:
        print(f"Image Builder emulator listening on {emulator.endpoint_url}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
