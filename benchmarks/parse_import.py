"""DAG parse time and import overhead, each measured in fresh processes (median of several runs).

parse_ratio: a DAG file with 100 image-build tasks vs the same DAG with 100 EmptyOperators.  Each process first
imports what the file imports (as Airflow's dag-processor does with ``parsing_pre_import_modules``), then times
``DagBag`` parsing the file.

import_overhead_ratio: (import of our operators and sensors - import of airflow.sdk) /
(import of airflow.providers.amazon.aws.operators.ec2 - import of airflow.sdk).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

RUNS = 7
TASKS = 100
HEADER = """
import pendulum
from airflow.sdk import DAG
{imports}
with DAG("bench_parse", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    for index in range({tasks}):
        {task}
"""
OURS = HEADER.format(
    tasks=TASKS,
    imports="from airflow_imagebuilder.operators import ImageBuilderCreateImageOperator",
    task='ImageBuilderCreateImageOperator(task_id=f"build_{index}", '
    'image_recipe_arn=f"arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/r{index}/1.0.0", '
    'infrastructure_configuration_arn="arn:aws:imagebuilder:us-east-1:123456789012:infrastructure-configuration/i", '
    'tags={"index": str(index), "run": "{{ run_id }}"})',
)
EMPTY = HEADER.format(
    tasks=TASKS,
    imports="from airflow.providers.standard.operators.empty import EmptyOperator",
    task='EmptyOperator(task_id=f"build_{index}")',
)
PARSE = """
import sys, time
{pre_import}
from airflow.dag_processing.dagbag import DagBag
started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
elapsed = time.perf_counter() - started
assert not bag.import_errors, bag.import_errors
print(elapsed)
"""
IMPORT = """
import time
started = time.perf_counter()
{statement}
print(time.perf_counter() - started)
"""


def _run(code: str, *args: str, env: dict[str, str]) -> float:
    output = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True)
    return float(output.stdout.strip().splitlines()[-1])


def _median(code: str, *args: str, env: dict[str, str]) -> float:
    return statistics.median(_run(code, *args, env=env) for _ in range(RUNS))


def measure() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "AIRFLOW_HOME": home, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
        subprocess.run(
            [str(Path(sys.executable).with_name("airflow")), "db", "migrate"], env=env, capture_output=True, check=True
        )
        files = {}
        for name, source in (("ours", OURS), ("empty", EMPTY)):
            path = Path(home) / f"{name}_dag.py"
            path.write_text(source)
            files[name] = path
        ours_parse = _median(
            PARSE.format(pre_import="import airflow_imagebuilder.operators"), str(files["ours"]), env=env
        )
        empty_parse = _median(
            PARSE.format(pre_import="import airflow.providers.standard.operators.empty"), str(files["empty"]), env=env
        )
        sdk = _median(IMPORT.format(statement="import airflow.sdk"), env=env)
        ours_import = _median(
            IMPORT.format(statement="import airflow.sdk, airflow_imagebuilder.operators, airflow_imagebuilder.sensors"),
            env=env,
        )
        ec2_import = _median(
            IMPORT.format(statement="import airflow.sdk, airflow.providers.amazon.aws.operators.ec2"), env=env
        )
    return {
        "parse_ours_s": ours_parse,
        "parse_empty_s": empty_parse,
        "parse_ratio": ours_parse / empty_parse,
        "import_sdk_s": sdk,
        "import_ours_s": ours_import,
        "import_ec2_s": ec2_import,
        "import_overhead_ratio": (ours_import - sdk) / (ec2_import - sdk),
    }


def report(results: dict[str, float]) -> list[str]:
    return [
        f"DAG parse ({TASKS} tasks, median of {RUNS} fresh processes)",
        f"  100 image builds {results['parse_ours_s'] * 1000:8.1f} ms   100 EmptyOperators "
        f"{results['parse_empty_s'] * 1000:8.1f} ms   ratio {results['parse_ratio']:.2f}",
        "Import (median of fresh processes)",
        f"  airflow.sdk {results['import_sdk_s'] * 1000:.0f} ms, + our operators and sensors "
        f"{results['import_ours_s'] * 1000:.0f} ms, + amazon ec2 operators {results['import_ec2_s'] * 1000:.0f} ms"
        f"   overhead ratio {results['import_overhead_ratio']:.2f}",
    ]


if __name__ == "__main__":
    measured = measure()
    print("\n".join(report(measured)))
    print("PARSE_IMPORT " + json.dumps(measured))
