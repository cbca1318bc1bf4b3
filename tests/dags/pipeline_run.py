"""Test DAG: start an image pipeline (ARN from params, settings from the environment), then follow it.

IB_PIPELINE (pipeline name in the ARN, templated through params), IB_WAIT, IB_DEFERRABLE, IB_RETRIES tune it.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_imagebuilder.operators import ImageBuilderStartPipelineExecutionOperator
from airflow_imagebuilder.sensors import ImageBuilderImageSensor

FAST_RETRY = {"base_delay": 0.01, "max_delay": 0.05, "max_attempts": 30}

with DAG(
    "ib_pipeline_run",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"pipeline": os.environ.get("IB_PIPELINE", "golden-nightly")},
) as dag:
    start = ImageBuilderStartPipelineExecutionOperator(
        task_id="start",
        image_pipeline_arn="arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/{{ params.pipeline }}",
        tags={"night": "{{ ds }}"},
        wait_for_completion=os.environ.get("IB_WAIT", "1") == "1",
        deferrable=os.environ.get("IB_DEFERRABLE") == "1",
        waiter_delay=0.05,
        waiter_max_attempts=400,
        api_retry=FAST_RETRY,
        retries=int(os.environ.get("IB_RETRIES", "0")),
        retry_delay=0,
    )
    ImageBuilderImageSensor(
        task_id="follow", image_build_version_arn=start.output, poke_interval=0.05, timeout=60, api_retry=FAST_RETRY
    )
