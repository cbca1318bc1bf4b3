"""Golden AMI chain: build an image, wait for it in the triggerer, publish its AMI id, announce it as an Asset.

Runs unchanged against the local emulator (``make demo``) and against real AWS: set the Airflow Variables
``imagebuilder_image_recipe_arn``, ``imagebuilder_infrastructure_configuration_arn``,
``imagebuilder_distribution_configuration_arn`` and ``golden_ami_ssm_parameter`` (defaults below fit the
emulator), and point the ``aws_default`` connection at your account.
"""

from __future__ import annotations

import pendulum
from airflow.providers.amazon.aws.hooks.ssm import SsmHook
from airflow.sdk import DAG, Asset, task

from airflow_imagebuilder.operators import ImageBuilderCreateImageOperator
from airflow_imagebuilder.sensors import ImageBuilderImageSensor

GOLDEN_AMI = Asset("imagebuilder://golden-base/ami")
EMULATOR = "arn:aws:imagebuilder:us-east-1:123456789012"

with DAG(
    dag_id="imagebuilder_golden_ami",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["imagebuilder", "example"],
    doc_md=__doc__,
) as dag:
    create_image = ImageBuilderCreateImageOperator(
        task_id="create_image",
        image_recipe_arn="{{ var.value.get('imagebuilder_image_recipe_arn', '"
        + EMULATOR
        + ":image-recipe/golden-base/1.0.0') }}",
        infrastructure_configuration_arn="{{ var.value.get('imagebuilder_infrastructure_configuration_arn', '"
        + EMULATOR
        + ":infrastructure-configuration/golden-build') }}",
        distribution_configuration_arn="{{ var.value.get('imagebuilder_distribution_configuration_arn', '"
        + EMULATOR
        + ":distribution-configuration/golden-regions') }}",
        image_tests_configuration={"imageTestsEnabled": True, "timeoutMinutes": 90},
        tags={"airflow-dag": "{{ dag.dag_id }}", "airflow-run": "{{ run_id }}"},
        wait_for_completion=False,  # the sensor below waits, in the triggerer
    )

    wait_for_image = ImageBuilderImageSensor(
        task_id="wait_for_image",
        image_build_version_arn=create_image.output,
        deferrable=True,
        poke_interval=10,
        timeout=12 * 60 * 60,
    )

    @task(outlets=[GOLDEN_AMI])
    def publish_ami(image_arn: str, **context) -> dict:
        """Write the new AMI id to SSM (the golden-AMI pattern) and attach it to the Asset event."""
        ami_ids: dict[str, str] = context["ti"].xcom_pull(task_ids="wait_for_image", key="ami_ids")
        if not ami_ids:
            raise ValueError(f"Image {image_arn} produced no AMI; is its recipe a container recipe?")
        parameter = context["var"]["value"].get("golden_ami_ssm_parameter", "/golden-ami/golden-base/latest")
        # One parameter per region, each holding that region's AMI: XCom dicts carry no order to rely on
        # (PostgreSQL's JSONB sorts keys), so never "the first region".
        for region, ami_id in ami_ids.items():
            SsmHook(aws_conn_id="aws_default", region_name=region).conn.put_parameter(
                Name=parameter, Value=ami_id, Type="String", Overwrite=True
            )
        context["outlet_events"][GOLDEN_AMI].extra = {
            "image_build_version_arn": image_arn,
            "ami_ids": ami_ids,
            "ssm_parameter": parameter,
        }
        return {"ssm_parameter": parameter, "ami_ids": ami_ids}

    publish_ami(wait_for_image.output)
