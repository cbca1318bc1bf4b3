"""Pipeline executions per DAG run, through the pipeline operator under the same fault mix as ``operator_faults``.

A strict emulator is seeded with the example pipeline (recipe, infrastructure and distribution configurations,
pipeline: the boto3 calls infrastructure code makes).  A DAG of SHARDS mapped
``ImageBuilderStartPipelineExecutionOperator`` tasks then runs with ``airflow dags test`` for each of several
logical dates, while 20% of calls answer 429/500/503 and 5% of responses are lost after processing.

pipeline_executions_per_run: builds started by StartImagePipelineExecution per (logical date, task instance),
counted from the emulator's images and their tags (1.0 means one execution per run, no duplicate).
"""

from __future__ import annotations

import collections
import json
from typing import Any

from operator_faults import DELAY, DROP_SHARE, ERROR_SHARE, airflow_with_emulator, dags_test

from airflow_imagebuilder.testing import EmulatorControl
from airflow_imagebuilder.testing.examples import seed_example_resources
from airflow_imagebuilder.testing.processes import local_client

LOGICAL_DATES = ("2026-01-05", "2026-01-06", "2026-01-07")
SHARDS = 10
DAG = """
import pendulum
from airflow.sdk import DAG
from airflow_imagebuilder.operators import ImageBuilderStartPipelineExecutionOperator

with DAG("bench_pipeline", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    ImageBuilderStartPipelineExecutionOperator.partial(
        task_id="run_pipeline",
        image_pipeline_arn="{pipeline}",
        waiter_delay={delay},
        api_retry={{"base_delay": 0.01, "max_delay": 0.1, "max_attempts": 40}},
    ).expand(tags=[{{"shard": str(index), "logical_date": "{{{{ ds }}}}"}} for index in range({shards})])
"""


def measure() -> dict[str, Any]:
    with airflow_with_emulator(strict=True) as (env, emulator):
        imagebuilder = local_client("imagebuilder", emulator.endpoint_url)
        pipeline = seed_example_resources(imagebuilder)["pipeline"]
        control = EmulatorControl(emulator.endpoint_url)
        control.add_fault_mix(error_share=ERROR_SHARE, drop_share=DROP_SHARE)
        source = DAG.format(pipeline=pipeline, delay=DELAY, shards=SHARDS)
        for logical_date in LOGICAL_DATES:
            dags_test(env, "bench_pipeline", source, logical_date)
        control.clear_faults()
        journal = control.journal("StartImagePipelineExecution")
        images = control.images()
        tags = [imagebuilder.get_image(imageBuildVersionArn=arn)["image"].get("tags", {}) for arn in images]
    per_run = collections.Counter((tag.get("logical_date"), tag.get("shard")) for tag in tags)
    runs = len(LOGICAL_DATES) * SHARDS
    return {
        "runs": runs,
        "pipeline_executions_per_run": len(images) / runs,
        "most_executions_in_one_run": max(per_run.values(), default=0),
        "runs_with_an_execution": len(per_run),
        "start_calls_per_run": len(journal) / runs,
        "start_calls_faulted": sum(entry["outcome"] != "ok" for entry in journal) / max(len(journal), 1),
        "available": sum(status == "AVAILABLE" for status in images.values()),
    }


def report(results: dict[str, Any]) -> list[str]:
    return [
        f"Pipeline operator under faults ({len(LOGICAL_DATES)} logical dates x {SHARDS} mapped tasks = "
        f"{results['runs']} runs, strict emulator seeded with a pipeline)",
        f"  pipeline executions per run {results['pipeline_executions_per_run']:.2f} (most in one run "
        f"{results['most_executions_in_one_run']}, runs with one {results['runs_with_an_execution']}, "
        f"AVAILABLE {results['available']})   StartImagePipelineExecution calls per run "
        f"{results['start_calls_per_run']:.2f} ({results['start_calls_faulted']:.0%} faulted)",
    ]


if __name__ == "__main__":
    measured = measure()
    print("\n".join(report(measured)))
    print("PIPELINE " + json.dumps(measured))
