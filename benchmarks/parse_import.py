"""DAG parse time and import overhead against the Amazon provider's own operators, measured in the same run.

Four DAG files of 100 tasks each: ``ImageBuilderCreateImageOperator``, the Amazon provider's
``EC2CreateInstanceOperator`` and ``GlueJobOperator`` (``AwsBaseOperator``s with a templated dict, as ours), and
``EmptyOperator`` (the floor of any operator, for information).  After one unrecorded warm-up process per file,
each round parses every file once, each in a fresh process, in a rotating order.  The process times
``import airflow.sdk``, then the import of the operator's module (the import overhead), then ``DagBag`` parsing
the file after that import (as Airflow's dag-processor does with ``parsing_pre_import_modules``).

Ratios are taken within each round (so drift of this shared machine hits both sides alike) and reported as the
median over rounds with their interquartile range and min-max.  The goal is on import and parse together, what
Airflow's dag-processor pays per DAG file (each file is parsed in a fresh child process that imports what the
file imports): at most 1.15 times the EC2 operator's file.  Our operators check literal request fields when the
DAG is parsed, which the Amazon operators do not; that cost is accepted.  Import ratios <= 1.0 against both.
The split between import and parse is not clean: parse time depends on how much the import grew the heap (memory a
large import allocated and freed makes the parse's allocations cheaper). The ratio against EmptyOperator is
informational: any ``AwsBaseOperator`` costs more to construct than an operator with no connection, region or
botocore arguments.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROUNDS = int(os.environ.get("BENCH_PARSE_ROUNDS", "11"))
TASKS = 100
HEADER = """
import pendulum
from airflow.sdk import DAG
from {module} import {operator}

with DAG("bench_parse", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    for index in range({tasks}):
        {operator}(task_id=f"task_{{index}}", {arguments})
"""
#: name: (modules imported before parsing, module and operator the DAG file uses, its arguments per task).
VARIANTS: dict[str, tuple[str, str, str, str]] = {
    "ours": (
        "airflow_imagebuilder.operators",
        "airflow_imagebuilder.operators",
        "ImageBuilderCreateImageOperator",
        'image_recipe_arn=f"arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/r{index}/1.0.0", '
        'infrastructure_configuration_arn="arn:aws:imagebuilder:us-east-1:123456789012:'
        'infrastructure-configuration/i", '
        'tags={"index": str(index), "run": "{{ run_id }}"}',
    ),
    "ec2": (
        "airflow.providers.amazon.aws.operators.ec2",
        "airflow.providers.amazon.aws.operators.ec2",
        "EC2CreateInstanceOperator",
        'image_id=f"ami-{index:017x}", '
        'config={"InstanceType": "t3.large", "TagSpecifications": [{"ResourceType": "instance", '
        '"Tags": [{"Key": "index", "Value": str(index)}, {"Key": "run", "Value": "{{ run_id }}"}]}]}',
    ),
    "glue": (
        "airflow.providers.amazon.aws.operators.glue",
        "airflow.providers.amazon.aws.operators.glue",
        "GlueJobOperator",
        'job_name=f"job_{index}", script_location="s3://bench/script.py", iam_role_name="glue-bench", '
        'script_args={"--index": str(index), "--run": "{{ run_id }}"}',
    ),
    "empty": (
        "airflow.providers.standard.operators.empty",
        "airflow.providers.standard.operators.empty",
        "EmptyOperator",
        "",
    ),
}
PROCESS = """
import json, sys, time
started = time.perf_counter()
import airflow.sdk
sdk_done = time.perf_counter()
import {pre_import}
imported = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
parse_started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
parsed = time.perf_counter()
assert not bag.import_errors, bag.import_errors
assert len(bag.dags["bench_parse"].tasks) == {tasks}
print(json.dumps({{"sdk_s": sdk_done - started, "import_s": imported - sdk_done, "parse_s": parsed - parse_started}}))
"""
BASELINES = ("ec2", "glue", "empty")


def _run(name: str, path: Path, env: dict[str, str]) -> dict[str, float]:
    code = PROCESS.format(pre_import=VARIANTS[name][0], tasks=TASKS)
    output = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True)
    if output.returncode != 0:
        raise RuntimeError(f"parsing {path.name} failed:\n{output.stderr[-3000:]}")
    return dict(json.loads(output.stdout.strip().splitlines()[-1]))


def spread(values: list[float]) -> dict[str, float]:
    """Median, quartiles and extremes of repeated measurements."""
    quartiles = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    return {
        "median": statistics.median(values),
        "q1": quartiles[0],
        "q3": quartiles[2],
        "min": min(values),
        "max": max(values),
    }


def measure(rounds: int = ROUNDS) -> dict[str, Any]:
    """Per-round times of every variant and the per-round ratios of ours to each baseline, summarized."""
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as home:
        # Bytecode as a deployment has it (pip compiles on install): the warm-up writes every module's bytecode
        # to a cache of this run, which the rounds then load, whatever PYTHONDONTWRITEBYTECODE the caller has.
        env = {
            **{key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"},
            "PYTHONPYCACHEPREFIX": str(Path(home) / "pycache"),
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        }
        subprocess.run(
            [str(Path(sys.executable).with_name("airflow")), "db", "migrate"], env=env, capture_output=True, check=True
        )
        files = {}
        for name, (_, module, operator, arguments) in VARIANTS.items():
            files[name] = Path(home) / f"{name}_dag.py"
            files[name].write_text(HEADER.format(module=module, operator=operator, arguments=arguments, tasks=TASKS))
        names = list(VARIANTS)
        for name in names:  # warm-up: byte-compile and page in every module once, unrecorded
            _run(name, files[name], env)
        for round_index in range(rounds):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                samples[name].append(_run(name, files[name], env))
    results: dict[str, Any] = {"rounds": rounds, "tasks": TASKS}
    for runs in samples.values():
        for run in runs:
            run["file_s"] = run["import_s"] + run["parse_s"]
    for name, runs in samples.items():
        for figure in ("sdk_s", "import_s", "parse_s", "file_s"):
            results[f"{figure[:-2]}_{name}_s"] = spread([run[figure] for run in runs])
    for baseline in BASELINES:
        for figure in ("parse_s", "import_s", "file_s") if baseline != "empty" else ("parse_s",):
            pairs = zip(samples["ours"], samples[baseline], strict=True)
            ratios = [ours[figure] / base[figure] for ours, base in pairs]
            results[f"{figure[:-2]}_ratio_vs_{baseline}"] = spread(ratios)
    return results


def _ms(figure: dict[str, float]) -> str:
    return f"{figure['median'] * 1000:7.1f} ms ({figure['min'] * 1000:.1f}-{figure['max'] * 1000:.1f})"


def _ratio(figure: dict[str, float]) -> str:
    return (
        f"{figure['median']:.2f} (IQR {figure['q1']:.2f}-{figure['q3']:.2f}, "
        f"min-max {figure['min']:.2f}-{figure['max']:.2f})"
    )


def report(results: dict[str, Any]) -> list[str]:
    labels = {
        "ours": "ImageBuilderCreateImageOperator",
        "ec2": "EC2CreateInstanceOperator",
        "glue": "GlueJobOperator",
        "empty": "EmptyOperator",
    }
    lines = [
        f"DAG parse and import ({results['tasks']} tasks per file, {results['rounds']} rounds of fresh processes; "
        "medians, min-max in brackets)",
        f"  airflow.sdk import {_ms(results['sdk_ours_s'])}",
    ]
    for name, label in labels.items():
        lines.append(
            f"  {label:32} parse {_ms(results[f'parse_{name}_s'])}   import beyond airflow.sdk "
            f"{_ms(results[f'import_{name}_s'])}"
        )
    for baseline in BASELINES:
        lines.append(
            f"  ours / {labels[baseline]:26} parse {_ratio(results[f'parse_ratio_vs_{baseline}'])}"
            + ("" if baseline == "empty" else f"   import {_ratio(results[f'import_ratio_vs_{baseline}'])}")
        )
    for baseline in ("ec2", "glue"):
        lines.append(
            f"  ours / {labels[baseline]:26} import + parse (one DAG file) "
            f"{_ratio(results[f'file_ratio_vs_{baseline}'])}"
        )
    return lines


if __name__ == "__main__":
    measured = measure()
    print("\n".join(report(measured)))
    print("PARSE_IMPORT " + json.dumps(measured))
