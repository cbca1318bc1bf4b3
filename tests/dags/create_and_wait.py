"""Test DAG: create an image (settings from the environment) and follow it with the sensor.

IB_WAIT (create waits itself), IB_DEFERRABLE, IB_FORCE_REBUILD, IB_SENSOR_DEFERRABLE, IB_TAG (a tag value),
IB_CLIENT_TOKEN tune it per test.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_imagebuilder.operators import ImageBuilderCreateImageOperator
from airflow_imagebuilder.sensors import ImageBuilderImageSensor

ACCOUNT_REGION = "us-east-1:123456789012"
FAST_RETRY = {"base_delay": 0.01, "max_delay": 0.05, "max_attempts": 30}

with DAG(
    "ib_create_and_wait",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    params={"recipe_version": "1.0.0"},
) as dag:
    create = ImageBuilderCreateImageOperator(
        task_id="create",
        image_recipe_arn=f"arn:aws:imagebuilder:{ACCOUNT_REGION}:image-recipe/golden-base/"
        "{{ params.recipe_version }}",
        infrastructure_configuration_arn=f"arn:aws:imagebuilder:{ACCOUNT_REGION}:infrastructure-configuration/build",
        distribution_configuration_arn=f"arn:aws:imagebuilder:{ACCOUNT_REGION}:distribution-configuration/golden",
        image_tests_configuration={"imageTestsEnabled": True, "timeoutMinutes": "{{ 60 * 2 }}"},
        tags={"run": "{{ run_id }}", "variant": os.environ.get("IB_TAG", "base")},
        workflows=[
            {
                "workflowArn": "arn:aws:imagebuilder:us-east-1:aws:workflow/build/build-image/1.0.0/1",
                "parameters": [{"name": "date", "value": ["{{ ds }}"]}],
            }
        ],
        client_token=os.environ.get("IB_CLIENT_TOKEN") or None,
        force_rebuild=os.environ.get("IB_FORCE_REBUILD") == "1",
        wait_for_completion=os.environ.get("IB_WAIT", "0") == "1",
        deferrable=os.environ.get("IB_DEFERRABLE") == "1",
        waiter_delay=0.05,
        waiter_max_attempts=400,
        api_retry=FAST_RETRY,
    )
    wait = ImageBuilderImageSensor(
        task_id="wait",
        image_build_version_arn=create.output,
        poke_interval=0.05,
        timeout=60,
        deferrable=os.environ.get("IB_SENSOR_DEFERRABLE") == "1",
        api_retry=FAST_RETRY,
    )
