"""Scheduled rebuild: every Monday at 04:00 UTC, one image per logical date, from a fixed recipe version.

With ``catchup=True`` missed weeks are built when the DAG is enabled, and ``airflow backfill create`` builds any
range of past weeks. Clearing or retrying a week never starts a second build for it: the client token is derived
from the task instance, so the retry follows (or reuses) that week's image.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_imagebuilder.operators import ImageBuilderCreateImageOperator

EMULATOR = "arn:aws:imagebuilder:us-east-1:123456789012"

with DAG(
    dag_id="imagebuilder_weekly_rebuild",
    schedule="0 4 * * 1",
    start_date=pendulum.datetime(2026, 10, 5, tz="UTC"),
    catchup=True,
    max_active_runs=3,
    tags=["imagebuilder", "example"],
    doc_md=__doc__,
) as dag:
    ImageBuilderCreateImageOperator(
        task_id="rebuild_image",
        image_recipe_arn="{{ var.value.get('imagebuilder_image_recipe_arn', '"
        + EMULATOR
        + ":image-recipe/golden-base/1.0.0') }}",
        infrastructure_configuration_arn="{{ var.value.get('imagebuilder_infrastructure_configuration_arn', '"
        + EMULATOR
        + ":infrastructure-configuration/golden-build') }}",
        tags={"patch-week": "{{ ds }}"},
        deferrable=True,
        waiter_delay=10,
        retries=2,
    )
