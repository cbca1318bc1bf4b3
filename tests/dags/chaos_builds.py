"""Chaos DAG: IB_CHAOS_TASKS (default 50) deferrable image builds as mapped task instances.

Each build is tagged with its run (``chaos-run``) and map index (``shard``), so a test counts the images of each
task instance from the emulator alone.  The API retry policy is the provider's default with every duration divided
by IB_CHAOS_TIME_SCALE (default 1; attempts unchanged), so an outage scaled down by the same factor meets the same
policy, in proportion.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_imagebuilder._decisions.retry import RetryPolicy
from airflow_imagebuilder.operators import ImageBuilderCreateImageOperator

TASKS = int(os.environ.get("IB_CHAOS_TASKS", "50"))
TIME_SCALE = float(os.environ.get("IB_CHAOS_TIME_SCALE", "1"))
ACCOUNT_REGION = "us-east-1:123456789012"
DEFAULT_RETRY = RetryPolicy()
API_RETRY = {
    "base_delay": DEFAULT_RETRY.base_delay / TIME_SCALE,
    "max_delay": DEFAULT_RETRY.max_delay / TIME_SCALE,
    "max_elapsed": DEFAULT_RETRY.max_elapsed / TIME_SCALE,
    "max_attempts": DEFAULT_RETRY.max_attempts,
}

with DAG(
    "ib_chaos",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    max_active_tasks=TASKS,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=3)},
) as dag:
    ImageBuilderCreateImageOperator.partial(
        task_id="build",
        image_recipe_arn=f"arn:aws:imagebuilder:{ACCOUNT_REGION}:image-recipe/chaos/1.0.0",
        infrastructure_configuration_arn=f"arn:aws:imagebuilder:{ACCOUNT_REGION}:infrastructure-configuration/chaos",
        deferrable=True,
        waiter_delay=float(os.environ.get("IB_CHAOS_WAITER_DELAY", "5")),
        waiter_max_attempts=720,
        api_retry=API_RETRY,
        botocore_config={"connect_timeout": 5, "read_timeout": 20},
    ).expand(tags=[{"chaos-run": "{{ run_id }}", "shard": str(index)} for index in range(TASKS)])
