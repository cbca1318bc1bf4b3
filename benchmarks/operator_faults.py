"""CreateImage and GetImage calls per build, through the operator under the reliability soak's fault mix.

A DAG of N mapped ImageBuilderCreateImageOperator tasks runs with ``airflow dags test`` against the emulator,
which answers 20% of calls with 429/500/503 and drops 5% of responses after processing them.

creates_per_build: images the emulator built per task (1.0 means no duplicate build); CreateImage calls per build
are reported beside it.  gets_per_build_excess: answered GetImage calls per build minus ceil(build time / delay).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from airflow_imagebuilder.testing import EmulatorControl
from airflow_imagebuilder.testing.processes import ServiceProcess, aws_connection_uri, emulator_process

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
#: The reliability soak's fault mix: errors (429/500/503 in equal parts) and responses lost after processing.
ERROR_SHARE = 0.20
DROP_SHARE = 0.05
TASKS = 50
PHASE_SECONDS = 0.2
BUILD_SECONDS = 5 * PHASE_SECONDS
DELAY = 0.25
DAG = f"""
import pendulum
from airflow.sdk import DAG
from airflow_imagebuilder.operators import ImageBuilderCreateImageOperator

with DAG("bench_faults", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    ImageBuilderCreateImageOperator.partial(
        task_id="build",
        image_recipe_arn="arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/bench/1.0.0",
        infrastructure_configuration_arn="arn:aws:imagebuilder:us-east-1:123456789012:infrastructure-configuration/bench-infra",
        waiter_delay={DELAY},
        api_retry={{"base_delay": 0.01, "max_delay": 0.1, "max_attempts": 40}},
    ).expand(tags=[{{"shard": str(index)}} for index in range({TASKS})])
"""


@contextlib.contextmanager
def airflow_with_emulator(*, strict: bool = False) -> Iterator[tuple[dict[str, str], ServiceProcess]]:
    """A throwaway Airflow home (database migrated, empty dags folder) whose ``aws_default`` is a fresh emulator.

    Yields the environment for Airflow commands and the emulator process (``strict``: seed it first).
    """
    with (
        tempfile.TemporaryDirectory() as home,
        emulator_process(phase_seconds=PHASE_SECONDS, log_dir=Path(home), strict=strict) as emulator,
    ):
        (Path(home) / "dags").mkdir()
        env = {
            **os.environ,
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__DAGS_FOLDER": str(Path(home) / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_CONN_AWS_DEFAULT": aws_connection_uri(emulator.endpoint_url),
        }
        subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, check=True)
        yield env, emulator


def dags_test(env: dict[str, str], dag_id: str, source: str, logical_date: str | None = None) -> None:
    """Write ``source`` as the DAG file of ``dag_id`` and run it with ``airflow dags test`` (raise if it fails)."""
    (Path(env["AIRFLOW__CORE__DAGS_FOLDER"]) / f"{dag_id}.py").write_text(source)
    command = [AIRFLOW, "dags", "test", dag_id, *([logical_date] if logical_date else [])]
    run = subprocess.run(command, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(run.stdout[-3000:] + run.stderr[-3000:])


def measure() -> dict[str, float]:
    with airflow_with_emulator() as (env, emulator):
        control = EmulatorControl(emulator.endpoint_url)
        control.add_fault_mix(error_share=ERROR_SHARE, drop_share=DROP_SHARE)
        dags_test(env, "bench_faults", DAG)
        journal = control.journal()
        images = control.images()
    gets_ok = [entry for entry in journal if entry["operation"] == "GetImage" and entry["outcome"] == "ok"]
    gets_all = [entry for entry in journal if entry["operation"] == "GetImage"]
    creates = [entry for entry in journal if entry["operation"] == "CreateImage"]
    faulted = [entry for entry in journal if entry["outcome"] != "ok"]
    return {
        "tasks": TASKS,
        "creates_per_build": len(images) / TASKS,
        "create_calls_per_build": len(creates) / TASKS,
        "gets_per_build": len(gets_ok) / TASKS,
        "get_calls_per_build": len(gets_all) / TASKS,
        "gets_per_build_excess": len(gets_ok) / TASKS - math.ceil(BUILD_SECONDS / DELAY),
        "faulted_share": len(faulted) / len(journal),
        "available": sum(status == "AVAILABLE" for status in images.values()),
    }


def report(results: dict[str, float]) -> list[str]:
    return [
        f"Operator under faults ({results['tasks']} tasks, {results['faulted_share']:.0%} of calls faulted, "
        f"build {BUILD_SECONDS:g}s, delay {DELAY:g}s)",
        f"  images per task {results['creates_per_build']:.2f} "
        f"(CreateImage calls {results['create_calls_per_build']:.2f})"
        f"   answered GetImage per build {results['gets_per_build']:.2f} (all calls "
        f"{results['get_calls_per_build']:.2f}), minimum {math.ceil(BUILD_SECONDS / DELAY)}, "
        f"excess {results['gets_per_build_excess']:.2f}",
    ]


if __name__ == "__main__":
    measured = measure()
    print("\n".join(report(measured)))
    print("OPERATOR " + json.dumps(measured))
