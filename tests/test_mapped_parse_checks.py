"""Mapped image build tasks are checked when they run, with the messages of a task that is not mapped.

Airflow builds a mapped task (``MappedOperator.unmap``, which calls ``__init__``) only when it runs, so the checks
``__init__`` makes of literal arguments happen then, as for every Airflow operator: ``partial()`` and ``expand()``
are Airflow's own.
"""

from __future__ import annotations

import pendulum
import pytest
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, TaskGroup

from airflow_imagebuilder.exceptions import InvalidCreateImageRequest
from airflow_imagebuilder.operators import ImageBuilderCreateImageOperator, ImageBuilderStartPipelineExecutionOperator
from airflow_imagebuilder.sensors import ImageBuilderImageSensor
from tests.conftest import IMAGE_RECIPE_ARN, INFRASTRUCTURE_ARN

BAD_RECIPE = IMAGE_RECIPE_ARN.replace("1.0.0", "1.0")
PIPELINE_ARN = "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/nightly"


def _dag(**kwargs):
    return DAG("mapped_checks", schedule=None, start_date=pendulum.datetime(2026, 1, 1), **kwargs)


def test_a_literal_in_partial_is_checked_when_the_mapped_task_runs():
    with _dag() as dag:
        ImageBuilderCreateImageOperator.partial(
            task_id="build", infrastructure_configuration_arn=INFRASTRUCTURE_ARN, image_recipe_arn=BAD_RECIPE
        ).expand(tags=[{"shard": "0"}])
    with pytest.raises(InvalidCreateImageRequest, match=r"^build: image_recipe_arn=.* must be an image recipe ARN"):
        dag.task_dict["build"].unmap({"tags": {"shard": "0"}})


def test_each_mapped_value_is_checked_when_its_task_runs():
    with _dag() as dag:
        upstream = EmptyOperator(task_id="upstream").output
        ImageBuilderCreateImageOperator.partial(
            task_id="build", infrastructure_configuration_arn=INFRASTRUCTURE_ARN
        ).expand(image_recipe_arn=[IMAGE_RECIPE_ARN, upstream, "{{ params.recipe }}", BAD_RECIPE])
        ImageBuilderCreateImageOperator.partial(task_id="kwargs").expand_kwargs(upstream)
    build = dag.task_dict["build"]
    assert build.unmap({"image_recipe_arn": IMAGE_RECIPE_ARN}).image_recipe_arn == IMAGE_RECIPE_ARN
    with pytest.raises(InvalidCreateImageRequest, match=r"^build: image_recipe_arn=.* must be an image recipe ARN"):
        build.unmap({"image_recipe_arn": BAD_RECIPE})
    with pytest.raises(InvalidCreateImageRequest, match=r"^kwargs: image_recipe_arn="):
        dag.task_dict["kwargs"].unmap(
            {"image_recipe_arn": BAD_RECIPE, "infrastructure_configuration_arn": INFRASTRUCTURE_ARN}
        )


def test_the_shared_arguments_are_checked_with_the_dag_and_task_group_defaults():
    with _dag() as dag:
        ImageBuilderCreateImageOperator.partial(
            task_id="a6", infrastructure_configuration_arn=INFRASTRUCTURE_ARN, api_retry={"bogus": 1}
        ).expand(image_recipe_arn=[IMAGE_RECIPE_ARN])
        with TaskGroup("group", default_args={"max_finding_severity": "SEVERE"}):
            ImageBuilderCreateImageOperator.partial(
                task_id="build", infrastructure_configuration_arn=INFRASTRUCTURE_ARN
            ).expand(image_recipe_arn=[IMAGE_RECIPE_ARN])
    with pytest.raises(ValueError, match=r"a6: api_retry: unknown keys \['bogus'\]"):
        dag.task_dict["a6"].unmap({"image_recipe_arn": IMAGE_RECIPE_ARN})
    with pytest.raises(ValueError, match=r"group.build: max_finding_severity='SEVERE' is not a severity"):
        dag.task_dict["group.build"].unmap({"image_recipe_arn": IMAGE_RECIPE_ARN})


def test_pipeline_arguments_are_checked_when_the_mapped_task_runs():
    with _dag() as dag:
        ImageBuilderStartPipelineExecutionOperator.partial(task_id="start").expand(
            image_pipeline_arn=[PIPELINE_ARN, "arn:aws:s3:::bucket"]
        )
        ImageBuilderStartPipelineExecutionOperator.partial(task_id="tagged", tags={"aws:x": "v"}).expand(
            image_pipeline_arn=[PIPELINE_ARN]
        )
    with pytest.raises(InvalidCreateImageRequest, match=r"^start: image_pipeline_arn=.* must be an image pipeline ARN"):
        dag.task_dict["start"].unmap({"image_pipeline_arn": "arn:aws:s3:::bucket"})
    with pytest.raises(InvalidCreateImageRequest, match=r"^tagged: tags key 'aws:x' must not start with 'aws:'"):
        dag.task_dict["tagged"].unmap({"image_pipeline_arn": PIPELINE_ARN})


def test_mapped_sensors_are_checked_when_they_run():
    with _dag() as dag:
        builds = ImageBuilderCreateImageOperator.partial(
            task_id="build", infrastructure_configuration_arn=INFRASTRUCTURE_ARN
        ).expand(image_recipe_arn=[IMAGE_RECIPE_ARN])
        ImageBuilderImageSensor.partial(task_id="gate", api_retry={"bogus": 1}).expand(
            image_build_version_arn=builds.output
        )
    with pytest.raises(ValueError, match=r"^gate: api_retry: unknown keys \['bogus'\]"):
        dag.task_dict["gate"].unmap({"image_build_version_arn": "arn:aws:imagebuilder:x"})


def test_partial_on_an_instance_raises_as_for_any_operator():
    with _dag():
        build = ImageBuilderCreateImageOperator(
            task_id="build", infrastructure_configuration_arn=INFRASTRUCTURE_ARN, image_recipe_arn=IMAGE_RECIPE_ARN
        )
    with pytest.raises(TypeError, match="partial"):
        build.partial(task_id="again")
