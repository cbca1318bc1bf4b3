"""Soak DAG: IB_SOAK_TASKS image builds as mapped task instances (one task try each), all through Airflow."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_imagebuilder.operators import ImageBuilderCreateImageOperator

TASKS = int(os.environ.get("IB_SOAK_TASKS", "200"))
ACCOUNT_REGION = "us-east-1:123456789012"

with DAG("ib_soak", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    ImageBuilderCreateImageOperator.partial(
        task_id="build",
        image_recipe_arn=f"arn:aws:imagebuilder:{ACCOUNT_REGION}:image-recipe/soak/1.0.0",
        infrastructure_configuration_arn=f"arn:aws:imagebuilder:{ACCOUNT_REGION}:infrastructure-configuration/soak",
        waiter_delay=0.02,
        waiter_max_attempts=2000,
        api_retry={"base_delay": 0.005, "max_delay": 0.05, "max_attempts": 40, "max_elapsed": 120},
        botocore_config={"read_timeout": 2, "connect_timeout": 2},
    ).expand(tags=[{"shard": str(index)} for index in range(TASKS)])
