"""Roll out the golden AMI: runs whenever ``imagebuilder_golden_ami`` publishes a new one (Asset schedule)."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset, task

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
