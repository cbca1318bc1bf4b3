"""Nightly image pipeline run: start the pipeline at 02:00 UTC, wait in the triggerer, publish the AMI id.

The pipeline itself (recipe, infrastructure, distribution, tests) is defined by infrastructure code; Airflow starts
one execution per logical date. With ``catchup=True`` missed nights run when the DAG is enabled, and
``airflow backfill create`` runs any range of past nights. A retry, a worker crash or a clear never starts a second
execution for a night: the client token is derived from the task instance, so the retry follows (or reuses) that
night's image; a night whose execution FAILED builds anew on retry.

The wait is event-driven when the Airflow Variable ``imagebuilder_events_queue_url`` names an SQS queue that an
EventBridge rule fills with Image Builder's state change events (see docs/guides/event-driven.md): the triggerer
learns that the image is AVAILABLE from the queue within a second and confirms it with one GetImage, instead of
polling every ``waiter_delay`` seconds.  Without the Variable (or with it empty) the wait polls.  ``make demo`` and
docker-compose set it to a queue in moto.

Runs unchanged against the local emulator (seeded with ``seed_example_resources``) and against real AWS: set the
Airflow Variables ``imagebuilder_image_pipeline_arn``, ``nightly_ami_ssm_parameter`` and, for event-driven waits,
``imagebuilder_events_queue_url``, and point the ``aws_default`` connection at your account.
"""

from __future__ import annotations

import pendulum
from airflow.providers.amazon.aws.hooks.ssm import SsmHook
from airflow.sdk import DAG, task

from airflow_imagebuilder.operators import ImageBuilderStartPipelineExecutionOperator

EMULATOR = "arn:aws:imagebuilder:us-east-1:123456789012"

with DAG(
    dag_id="imagebuilder_pipeline_nightly",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=True,
    max_active_runs=3,
    tags=["imagebuilder", "example"],
    doc_md=__doc__,
) as dag:
    run_pipeline = ImageBuilderStartPipelineExecutionOperator(
        task_id="run_pipeline",
        image_pipeline_arn="{{ var.value.get('imagebuilder_image_pipeline_arn', '"
        + EMULATOR
        + ":image-pipeline/golden-nightly') }}",
        tags={"night": "{{ ds }}"},
        deferrable=True,
        waiter_delay=10,
        # An empty string keeps polling; a queue URL makes the deferred wait event-driven.
        completion_queue_url="{{ var.value.get('imagebuilder_events_queue_url', '') }}",
        retries=2,
    )

    @task
    def publish_ami(image_arn: str, **context) -> dict:
        """Write the night's AMI id to SSM, per region."""
        ami_ids: dict[str, str] = context["ti"].xcom_pull(task_ids="run_pipeline", key="ami_ids")
        if not ami_ids:
            raise ValueError(f"Image {image_arn} produced no AMI; is the pipeline's recipe a container recipe?")
        parameter = context["var"]["value"].get("nightly_ami_ssm_parameter", "/golden-ami/nightly/latest")
        for region, ami_id in ami_ids.items():
            SsmHook(aws_conn_id="aws_default", region_name=region).conn.put_parameter(
                Name=parameter, Value=ami_id, Type="String", Overwrite=True
            )
        return {"ssm_parameter": parameter, "ami_ids": ami_ids, "night": context["ds"]}

    publish_ami(run_pipeline.output)
