"""Test DAG: malformed upstream XComs reaching the operator and the sensor."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from airflow_imagebuilder.operators import ImageBuilderCreateImageOperator
from airflow_imagebuilder.sensors import ImageBuilderImageSensor

ACCOUNT_REGION = "us-east-1:123456789012"

with DAG("ib_bad_xcom", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:

    @task
    def a_dict() -> dict:
        return {"recipe": "golden"}

    @task
    def nothing() -> None:
        return None

    infrastructure = f"arn:aws:imagebuilder:{ACCOUNT_REGION}:infrastructure-configuration/build"
    ImageBuilderCreateImageOperator(
        task_id="create_from_dict", image_recipe_arn=a_dict(), infrastructure_configuration_arn=infrastructure
    )
    ImageBuilderCreateImageOperator(
        task_id="create_from_none", image_recipe_arn=nothing(), infrastructure_configuration_arn=infrastructure
    )
    ImageBuilderImageSensor(task_id="sensor_on_dict", image_build_version_arn=a_dict(), poke_interval=0.05, timeout=5)
