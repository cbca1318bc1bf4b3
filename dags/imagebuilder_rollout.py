"""Roll out the golden AMI: runs whenever ``imagebuilder_golden_ami`` publishes a new one (Asset schedule)."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_imagebuilder.triggers import ImageBuilderImageEventTrigger

GOLDEN_AMI = Asset("imagebuilder://golden-base/ami")  # published by imagebuilder_golden_ami

with DAG(
    dag_id="imagebuilder_rollout",
    schedule=[GOLDEN_AMI],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["imagebuilder", "example"],
    doc_md=__doc__,
) as dag:

    @task
    def read_new_ami(**context) -> dict[str, str]:
        """Read the AMI ids from the Asset event; a real rollout would update a launch template here."""
        events = context["triggering_asset_events"][GOLDEN_AMI]
        if not events:
            raise ValueError(f"{GOLDEN_AMI.uri} has no event to roll out")
        extra = events[-1].extra
        print(f"Rolling out {extra['ami_ids']} from {extra['image_build_version_arn']}")
        return extra["ami_ids"]

    read_new_ami()

# The same rollout, started by Image Builder's own events: the nightly pipeline's image becoming AVAILABLE, read
# from an SQS queue that an EventBridge rule fills (see docs/guides/event-driven.md). Defined
# when IMAGEBUILDER_EVENTS_QUEUE_URL names that queue.
if EVENTS_QUEUE_URL := os.environ.get("IMAGEBUILDER_EVENTS_QUEUE_URL"):
    NIGHTLY_IMAGE = Asset(
        "imagebuilder://golden-nightly/available",
        watchers=[
            AssetWatcher(
                name="golden_nightly_available",
                trigger=ImageBuilderImageEventTrigger(
                    queue_url=EVENTS_QUEUE_URL,
                    image_pipeline_arn=os.environ.get(
                        "IMAGEBUILDER_EVENTS_PIPELINE_ARN",
                        "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/golden-nightly",
                    ),
                ),
            )
        ],
    )

    with DAG(
        dag_id="imagebuilder_rollout_on_event",
        schedule=[NIGHTLY_IMAGE],
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        tags=["imagebuilder", "example"],
        doc_md="Roll out the nightly pipeline's image as soon as Image Builder says it is AVAILABLE.",
    ) as event_dag:

        @task
        def roll_out_event(**context) -> dict[str, str]:
            """Read the AMI ids the event trigger fired with (Airflow keeps them as the Asset event's payload)."""
            [event] = context["triggering_asset_events"][NIGHTLY_IMAGE][-1:]
            ami_ids = event.extra["payload"]["ami_ids"]
            print(f"Rolling out {ami_ids}")
            return ami_ids

        roll_out_event()
