"""Test DAG: a scanned build (IB_DEFERRABLE, IB_MAX_SEVERITY tune it), then the sensor with the same gate."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_imagebuilder.operators import ImageBuilderCreateImageOperator
from airflow_imagebuilder.sensors import ImageBuilderImageSensor

ARN = "arn:aws:imagebuilder:us-east-1:123456789012"
FAST_RETRY = {"base_delay": 0.01, "max_delay": 0.05, "max_attempts": 30}
GATE = os.environ.get("IB_MAX_SEVERITY") or None

with DAG("ib_diagnose", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    create = ImageBuilderCreateImageOperator(
        task_id="create",
        image_recipe_arn=f"{ARN}:image-recipe/golden-base/1.0.0",
        infrastructure_configuration_arn=f"{ARN}:infrastructure-configuration/build",
        image_scanning_configuration={"imageScanningEnabled": True},
        image_tests_configuration={"imageTestsEnabled": True},
        max_finding_severity=GATE,
        deferrable=os.environ.get("IB_DEFERRABLE") == "1",
        waiter_delay=0.05,
        waiter_max_attempts=400,
        api_retry=FAST_RETRY,
    )
    ImageBuilderImageSensor(
        task_id="wait",
        image_build_version_arn=create.output,
        max_finding_severity=GATE,
        poke_interval=0.05,
        timeout=60,
        api_retry=FAST_RETRY,
    )
