"""N concurrent event-driven waits in one event loop against the polling trigger at the same ``waiter_delay``.

Both runs use ``ImageBuilderImageTrigger`` in a fresh process (one asyncio loop, as in one triggerer), each against
its own N builds whose lengths are staggered from 60 to 300 seconds, so they end at different times (real Image
Builder builds last tens of minutes, which would favour events more; ``--shortest``/``--longest`` change it).
Polling asks GetImage every ``waiter_delay`` seconds; the event-driven run gives the triggers
``completion_queue_url``, a queue in moto server that an EventBridge rule (also moto) fills with the state change
events the emulator sends.  The
two runs go one after the other, each against an emulator of its own, so the polling run's builds send no events.

Measured: GetImage calls per build (emulator journal), CPU seconds of the process running the loop
(``time.process_time()``, imports excluded, the same for both) and detection latency: the trigger's fire time
minus the moment the emulator made the image AVAILABLE, both read from CLOCK_MONOTONIC, which every process on
one host shares (resolution well under a millisecond).  As a check that the clocks compare, the same latency is
also taken on wall-clock UTC: the fire time from ``time.time()`` minus the ``time`` of the emulator's AVAILABLE
event, which the service's format gives in whole seconds (so that figure reads 0-1 s high).

Whether moto keeps up: the emulator's event journal (sent / failed, peak events per second), the queue's backlog
sampled every second while the waits run, the CPU seconds moto and the emulator used, and the shared consumer's
counts (messages received, routed to a wait, released for other triggerers, deleted).  ``make bench`` runs 300
waits: moto falls behind at 1,000 (see docs/benchmarks.md), and a run that falls behind is stopped.

    python benchmarks/event_waits.py --n 300 --delay 30 --shortest 20 --longest 90
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import triggerer

#: Build lengths, seconds: shortest, longest, and how many distinct lengths in between.
SHORTEST = 60.0
LONGEST = 300.0
LENGTHS = 50
#: A run still going this long after its last build ended has fallen behind (moto not keeping up): stop it.
OVERRUN_SECONDS = 180.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class BacklogSampler(threading.Thread):
    """Samples a queue's visible and in-flight message counts every second."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        super().__init__(daemon=True)
        self.sqs, self.queue_url = sqs, queue_url
        self.visible: list[int] = []
        self.in_flight: list[int] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(1.0):
            attributes = self.sqs.get_queue_attributes(
                QueueUrl=self.queue_url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            self.visible.append(int(attributes["ApproximateNumberOfMessages"]))
            self.in_flight.append(int(attributes["ApproximateNumberOfMessagesNotVisible"]))

    def stop(self) -> None:
        self._done.set()
        self.join()


def _utc(timestamp: str) -> float:
    return dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def measure(n: int, delay: float, shortest: float = SHORTEST, longest: float = LONGEST) -> dict[str, Any]:
    from airflow_imagebuilder.testing import EmulatorControl
    from airflow_imagebuilder.testing.events import END_STATUSES, wire_events_to_queue
    from airflow_imagebuilder.testing.processes import aws_connection_uri, emulator_process, local_client, moto_process

    lengths = {"shortest": shortest, "longest": longest, "buckets": LENGTHS}
    timeout = longest + delay + OVERRUN_SECONDS
    with tempfile.TemporaryDirectory() as temporary, moto_process(log_dir=Path(temporary)) as moto:
        work = Path(temporary)
        base_env = {**os.environ, "AIRFLOW_HOME": temporary, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}

        with emulator_process(log_dir=work) as emulator:
            env = {**base_env, "AIRFLOW_CONN_AWS_DEFAULT": aws_connection_uri(emulator.endpoint_url)}
            available = triggerer.create_builds(emulator.endpoint_url, n, "polling", **lengths)
            polling = triggerer.run_waits("ours", emulator.endpoint_url, available, delay, env, work, timeout=timeout)

        sqs = local_client("sqs", moto.endpoint_url)
        # The rule docs/guides/event-driven.md recommends for waits: the ends of builds only.
        events = local_client("events", moto.endpoint_url)
        queue_url = wire_events_to_queue(events, sqs, "bench-event-waits", statuses=END_STATUSES)
        with emulator_process(log_dir=work, events_endpoint_url=moto.endpoint_url) as emulator:
            assert moto.process is not None and emulator.process is not None
            env = {
                **base_env,
                "AIRFLOW_CONN_AWS_DEFAULT": aws_connection_uri(emulator.endpoint_url, moto.endpoint_url),
            }
            service_cpu = {"moto": cpu_seconds(moto.process.pid), "emulator": cpu_seconds(emulator.process.pid)}
            sampler = BacklogSampler(local_client("sqs", moto.endpoint_url), queue_url)
            sampler.start()
            available = triggerer.create_builds(emulator.endpoint_url, n, "events", **lengths)
            events = triggerer.run_waits(
                "events", emulator.endpoint_url, available, delay, env, work, queue_url=queue_url, timeout=timeout
            )
            sampler.stop()
            service_cpu = {
                "moto": cpu_seconds(moto.process.pid) - service_cpu["moto"],
                "emulator": cpu_seconds(emulator.process.pid) - service_cpu["emulator"],
            }
            journal = [
                record
                for record in EmulatorControl(emulator.endpoint_url).event_journal()
                if record["image_build_version_arn"] in available
            ]

    run = events.pop("run")
    polling.pop("run")
    outcomes = collections.Counter(record["outcome"] for record in journal)
    per_second = collections.Counter(record["time"] for record in journal)
    became_available = {
        record["image_build_version_arn"]: _utc(record["time"]) for record in journal if record["status"] == "AVAILABLE"
    }
    wall = sorted(run["walls"][arn] - became_available[arn] for arn in available)
    # Wall-clock latency minus CLOCK_MONOTONIC latency per build: 0-1 s (whole-second event times) when they agree.
    agreement = [
        (run["walls"][arn] - became_available[arn]) - (run["events"][arn] - available[arn]) for arn in available
    ]
    events |= {
        "latency_p99_wall_s": triggerer.percentile(wall, 0.99),
        "clock_agreement_s": [min(agreement), max(agreement)],
        "events_per_build": len(journal) / n,
        "events_sent": outcomes["sent"],
        "events_failed": outcomes["failed"] + outcomes["pending"] + outcomes["delayed"],
        "events_peak_per_s": max(per_second.values()),
        "backlog_visible_max": max(sampler.visible, default=0),
        "backlog_in_flight_max": max(sampler.in_flight, default=0),
        "moto_cpu_s": service_cpu["moto"],
        "emulator_cpu_s": service_cpu["emulator"],
        "consumer": run["consumer_counts"],
    }
    return {"n": n, "delay": delay, "builds_s": [shortest, longest], "events": events, "polling": polling}


def report(results: dict[str, Any]) -> list[str]:
    events, polling, n = results["events"], results["polling"], results["n"]
    lines = [
        f"Event-driven waits: {n} concurrent in one event loop vs polling, waiter delay {results['delay']:g}s, "
        f"builds of {results['builds_s'][0]:g}-{results['builds_s'][1]:g}s",
        f"  {'':22}{'events':>12}{'polling':>12}{'ratio':>10}",
    ]
    for key, label in [
        ("cpu_s", "CPU seconds"),
        ("rss_growth_mib", "peak RSS growth MiB"),
        ("latency_p50_s", "latency p50 s"),
        ("latency_p99_s", "latency p99 s"),
        ("gets_per_build", "GetImage per build"),
    ]:
        ratio = events[key] / polling[key] if polling[key] else float("nan")
        lines.append(f"  {label:22}{events[key]:>12.2f}{polling[key]:>12.2f}{ratio:>10.2f}")
    low, high = events["clock_agreement_s"]
    consumer = events["consumer"]
    lines += [
        f"  latency p99 on wall-clock UTC (event times in whole seconds, reads 0-1 s high): "
        f"{events['latency_p99_wall_s']:.2f}s; wall minus monotonic latency per build {low:.2f}..{high:.2f}s",
        f"  moto: {events['events_sent']} events sent ({events['events_per_build']:.2f} per build, peak "
        f"{events['events_peak_per_s']}/s), {events['events_failed']} not sent; queue backlog max "
        f"{events['backlog_visible_max']} visible, {events['backlog_in_flight_max']} in flight; CPU s moto "
        f"{events['moto_cpu_s']:.1f}, emulator {events['emulator_cpu_s']:.1f}",
        f"  consumer: {consumer.get('received', 0)} received, {consumer.get('routed', 0)} routed, "
        f"{consumer.get('released', 0)} released, {consumer.get('deleted', 0)} deleted, "
        f"{consumer.get('malformed', 0)} malformed",
    ]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--delay", type=float, default=30.0)
    parser.add_argument("--shortest", type=float, default=SHORTEST, help="shortest build, seconds")
    parser.add_argument("--longest", type=float, default=LONGEST, help="longest build, seconds")
    args = parser.parse_args()
    results = measure(args.n, args.delay, args.shortest, args.longest)
    print("\n".join(report(results)))
    print("EVENT_WAITS " + json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
