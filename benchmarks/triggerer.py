"""N concurrent Image Builder waits in one event loop: ImageBuilderImageTrigger vs the baseline a user would write.

The baseline is the Amazon provider's own pattern: an ``AwsBaseWaiterTrigger`` subclass driving an
``image_available`` waiter.  botocore ships no waiter for imagebuilder, so the waiter is supplied as a custom
waiter model (``imagebuilder_waiters.json``), exactly as the provider does for services botocore lacks.

Each implementation runs in a fresh process against its own N builds, created just before with staggered build
times.  Measured in that process: CPU seconds, peak RSS growth while the triggers run, detection latency (event
time minus the moment the emulator made the image AVAILABLE; both on the shared CLOCK_MONOTONIC) and GetImage
calls per build (from the emulator's journal).

    python benchmarks/triggerer.py --n 1000 --delay 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PHASES = 5  # PENDING, BUILDING, TESTING, DISTRIBUTING, INTEGRATING


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def child(impl: str, arns: list[str], delay: float, queue_url: str | None = None) -> dict[str, Any]:
    """Run every wait to its end in this process; report CPU, RSS growth and event times.

    ``impl``: ``ours`` (polling), ``events`` (ours, event-driven through ``queue_url``) or ``baseline``.
    """
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
    from airflow.providers.amazon.aws.triggers.base import AwsBaseWaiterTrigger

    from airflow_imagebuilder._adapters.async_clients import SHARED_CLIENTS
    from airflow_imagebuilder._adapters.sqs import CONSUMERS
    from airflow_imagebuilder.triggers import ImageBuilderImageTrigger

    class BaselineImageBuilderHook(AwsBaseHook):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["client_type"] = "imagebuilder"
            super().__init__(*args, **kwargs)

        @property
        def waiter_path(self) -> Path:
            return HERE / "imagebuilder_waiters.json"

    class BaselineImageAvailableTrigger(AwsBaseWaiterTrigger):
        aws_hook_class = BaselineImageBuilderHook

        def __init__(
            self,
            *,
            image_build_version_arn: str,
            waiter_delay: int,
            waiter_max_attempts: int,
            aws_conn_id: str | None = "aws_default",
        ) -> None:
            super().__init__(
                serialized_fields={"image_build_version_arn": image_build_version_arn},
                waiter_name="image_available",
                waiter_args={"imageBuildVersionArn": image_build_version_arn},
                failure_message="Image build failed",
                status_message="Image status is",
                status_queries=["image.state.status"],
                return_key="image_build_version_arn",
                return_value=image_build_version_arn,
                waiter_delay=waiter_delay,
                waiter_max_attempts=waiter_max_attempts,
                aws_conn_id=aws_conn_id,
            )

    def make(arn: str) -> Any:
        if impl == "ours":
            return ImageBuilderImageTrigger(image_build_version_arn=arn, waiter_delay=delay, waiter_max_attempts=1000)
        if impl == "events":
            return ImageBuilderImageTrigger(
                image_build_version_arn=arn,
                waiter_delay=delay,
                waiter_max_attempts=1000,
                completion_queue_url=queue_url,
            )
        return BaselineImageAvailableTrigger(image_build_version_arn=arn, waiter_delay=delay, waiter_max_attempts=1000)

    events: dict[str, float] = {}
    walls: dict[str, float] = {}
    statuses: dict[str, str] = {}
    consumer_counts: dict[str, int] = {}
    peak = 0

    async def follow(trigger: Any, arn: str) -> None:
        async for event in trigger.run():
            events[arn] = time.monotonic()
            walls[arn] = time.time()
            statuses[arn] = event.payload["status"]
            return

    async def sample_rss(stop: asyncio.Event) -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _rss_kib())
            await asyncio.sleep(0.05)

    async def main() -> None:
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_rss(stop))
        # The consumer every trigger of this loop shares (same queue and connection settings as theirs).
        consumer = CONSUMERS.get(queue_url, "aws_default", None, None, None) if queue_url else None
        await asyncio.gather(*(follow(make(arn), arn) for arn in arns))
        if consumer is not None:
            consumer_counts.update(consumer.counts)
        stop.set()
        await sampler
        await SHARED_CLIENTS.close_all()

    rss_before = _rss_kib()
    cpu_before = time.process_time()
    asyncio.run(main())
    return {
        "cpu_s": time.process_time() - cpu_before,
        "rss_growth_mib": (max(peak, _rss_kib()) - rss_before) / 1024,
        "events": events,
        "walls": walls,
        "statuses": statuses,
        "consumer_counts": consumer_counts,
    }


def create_builds(
    endpoint: str, n: int, tag: str, shortest: float = 2.0, longest: float = 20.0, buckets: int = 10
) -> dict[str, float]:
    """N builds whose total build times are staggered in ``buckets`` steps from ``shortest`` to ``longest`` seconds.

    Returns ARN -> the CLOCK_MONOTONIC time the emulator makes it AVAILABLE (its CreateImage time plus its phases).
    """
    from airflow_imagebuilder.testing import EmulatorControl
    from airflow_imagebuilder.testing.processes import local_client

    control = EmulatorControl(endpoint)
    client = local_client("imagebuilder", endpoint)
    step = (longest - shortest) / PHASES / max(1, buckets - 1)
    phases: dict[str, float] = {}
    for bucket in range(buckets):
        phase = shortest / PHASES + bucket * step
        control.set_phase_seconds(phase)
        for index in range(bucket, n, buckets):
            arn = client.create_image(
                imageRecipeArn="arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/bench/1.0.0",
                infrastructureConfigurationArn="arn:aws:imagebuilder:us-east-1:123456789012:infrastructure-configuration/bench-infra",
                clientToken=f"{tag}-{index}",
            )["imageBuildVersionArn"]
            phases[arn] = phase
    created = {entry["image_arn"]: entry["time"] for entry in control.journal("CreateImage")}
    return {arn: created[arn] + PHASES * phase for arn, phase in phases.items()}


def run_waits(
    impl: str,
    endpoint: str,
    available: dict[str, float],
    delay: float,
    env: dict[str, str],
    work: Path,
    queue_url: str | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run ``impl``'s waits for the builds of ``available`` in a fresh process; its figures and the raw run.

    ``timeout``: seconds after which the run is stopped and reported as failed.

    Latency is the trigger's fire time minus the moment the emulator made the image AVAILABLE, both read from
    CLOCK_MONOTONIC, which every process on the host shares.
    """
    from airflow_imagebuilder.testing import EmulatorControl

    n = len(available)
    arns_file = work / f"{impl}.json"
    arns_file.write_text(json.dumps(sorted(available)))
    command = [sys.executable, __file__, "--child", impl, "--arns", str(arns_file), "--delay", str(delay)]
    if queue_url:
        command += ["--queue-url", queue_url]
    try:
        output = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        raise RuntimeError(f"{impl}: the {n} waits did not all end within {timeout:g}s") from expired
    if output.returncode != 0:
        raise RuntimeError(f"{impl} run failed:\n{output.stderr[-3000:]}")
    run = json.loads(output.stdout.strip().splitlines()[-1])
    failed = {arn: status for arn, status in run["statuses"].items() if status != "success"}
    if len(run["events"]) != n or failed:
        raise RuntimeError(f"{impl}: {len(run['events'])} events of {n}, not successful: {failed}")
    latencies = sorted(run["events"][arn] - available[arn] for arn in available)
    gets = [entry for entry in EmulatorControl(endpoint).journal("GetImage") if entry["image_arn"] in available]
    return {
        "cpu_s": run["cpu_s"],
        "rss_growth_mib": run["rss_growth_mib"],
        "latency_p50_s": statistics.median(latencies),
        "latency_p99_s": percentile(latencies, 0.99),
        "gets_per_build": len(gets) / n,
        "run": run,
    }


def percentile(ordered: list[float], share: float) -> float:
    """The nearest-rank percentile of sorted values."""
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def measure(n: int, delay: float) -> dict[str, dict[str, float]]:
    from airflow_imagebuilder.testing.processes import aws_connection_uri, emulator_process

    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as work, emulator_process(log_dir=Path(work)) as emulator:
        env = {
            **os.environ,
            "AIRFLOW_CONN_AWS_DEFAULT": aws_connection_uri(emulator.endpoint_url),
            "AIRFLOW_HOME": work,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        }
        for impl in ("baseline", "ours"):
            available = create_builds(emulator.endpoint_url, n, impl)
            figures = run_waits(impl, emulator.endpoint_url, available, delay, env, Path(work))
            figures.pop("run")
            results[impl] = figures
    return results


def report(results: dict[str, dict[str, float]], n: int, delay: float) -> list[str]:
    ours, base = results["ours"], results["baseline"]
    lines = [
        f"Triggerer: {n} concurrent waits in one event loop, waiter delay {delay:g}s, builds of 2-20s",
        f"  {'':22}{'ours':>12}{'baseline':>12}{'ratio':>10}",
    ]
    for key, label in [
        ("cpu_s", "CPU seconds"),
        ("rss_growth_mib", "peak RSS growth MiB"),
        ("latency_p50_s", "latency p50 s"),
        ("latency_p99_s", "latency p99 s"),
        ("gets_per_build", "GetImage per build"),
    ]:
        ratio = ours[key] / base[key] if base[key] else float("nan")
        lines.append(f"  {label:22}{ours[key]:>12.2f}{base[key]:>12.2f}{ratio:>10.2f}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=5.0)
    parser.add_argument("--child", choices=["ours", "events", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--arns", help=argparse.SUPPRESS)
    parser.add_argument("--queue-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child(args.child, json.loads(Path(args.arns).read_text()), args.delay, args.queue_url)
        print(json.dumps(result))
        return 0
    results = measure(args.n, args.delay)
    print("\n".join(report(results, args.n, args.delay)))
    print("TRIGGERER " + json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
