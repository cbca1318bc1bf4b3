"""Mapped image build tasks: partial()/expand() check the literal arguments when the DAG is parsed.

Airflow calls a mapped task's ``__init__`` only when the task runs (``MappedOperator.unmap``), so the operators'
``partial()`` returns an ``OperatorPartial`` whose ``expand()``/``expand_kwargs()`` run ``_check_arguments`` on the
arguments each mapped task will get.
"""

from __future__ import annotations

import pendulum
import pytest
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, TaskGroup

from airflow_imagebuilder.exceptions import InvalidCreateImageRequest
from airflow_imagebuilder.operators import ImageBuilderCreateImageOperator, ImageBuilderStartPipelineExecutionOperator
from tests.conftest import IMAGE_RECIPE_ARN, INFRASTRUCTURE_ARN

BAD_RECIPE = IMAGE_RECIPE_ARN.replace("1.0.0", "1.0")
PIPELINE_ARN = "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/nightly"


def _dag(**kwargs):
    return DAG("mapped_checks", schedule=None, start_date=pendulum.datetime(2026, 1, 1), **kwargs)


def test_a_literal_in_partial_is_checked_when_the_dag_is_parsed():
    with _dag(), pytest.raises(InvalidCreateImageRequest, match=r"task 'build': imageRecipeArn=.*pattern"):
        ImageBuilderCreateImageOperator.partial(
            task_id="build", infrastructure_configuration_arn=INFRASTRUCTURE_ARN, image_recipe_arn=BAD_RECIPE
        ).expand(tags=[{"shard": "0"}])


def test_each_element_of_a_literal_expand_list_is_checked():
    with _dag(), pytest.raises(InvalidCreateImageRequest, match=r"'build' \(image_recipe_arn\[1\] of expand\(\)\)"):
        ImageBuilderCreateImageOperator.partial(
            task_id="build", infrastructure_configuration_arn=INFRASTRUCTURE_ARN
        ).expand(image_recipe_arn=[IMAGE_RECIPE_ARN, BAD_RECIPE])


def test_each_dict_of_a_literal_expand_kwargs_list_is_checked():
    with _dag(), pytest.raises(InvalidCreateImageRequest, match=r"\(item 1 of expand_kwargs\(\)\)"):
        ImageBuilderCreateImageOperator.partial(
            task_id="build", infrastructure_configuration_arn=INFRASTRUCTURE_ARN
        ).expand_kwargs([{"image_recipe_arn": IMAGE_RECIPE_ARN}, {"image_recipe_arn": BAD_RECIPE}])


def test_values_known_only_at_run_time_are_not_judged():
    with _dag() as dag:
        upstream = EmptyOperator(task_id="upstream").output
        infrastructure = {"infrastructure_configuration_arn": INFRASTRUCTURE_ARN}
        ImageBuilderCreateImageOperator.partial(task_id="a", **infrastructure).expand(image_recipe_arn=upstream)
        ImageBuilderCreateImageOperator.partial(task_id="b", **infrastructure).expand(
            image_recipe_arn=[IMAGE_RECIPE_ARN, upstream, "{{ params.recipe }}"]
        )
        ImageBuilderCreateImageOperator.partial(task_id="c").expand_kwargs(upstream)
        ImageBuilderStartPipelineExecutionOperator.partial(task_id="d").expand(image_pipeline_arn=upstream)
    assert {"a", "b", "c", "d"} <= set(dag.task_dict)
    # and at run time each mapped task is still checked by __init__
    with pytest.raises(InvalidCreateImageRequest, match="imageRecipeArn"):
        dag.task_dict["a"].unmap({"image_recipe_arn": BAD_RECIPE})


def test_the_shared_arguments_are_checked_with_the_dag_and_task_group_defaults():
    with _dag(), pytest.raises(ValueError, match=r"a6: api_retry: unknown keys \['bogus'\]"):
        ImageBuilderCreateImageOperator.partial(
            task_id="a6", infrastructure_configuration_arn=INFRASTRUCTURE_ARN, api_retry={"bogus": 1}
        ).expand(image_recipe_arn=[IMAGE_RECIPE_ARN])
    with (
        _dag(),
        TaskGroup("group", default_args={"max_finding_severity": "SEVERE"}),
        pytest.raises(ValueError, match=r"group.build: max_finding_severity='SEVERE' is not a severity"),
    ):
        ImageBuilderCreateImageOperator.partial(
            task_id="build", infrastructure_configuration_arn=INFRASTRUCTURE_ARN
        ).expand(image_recipe_arn=[IMAGE_RECIPE_ARN])
    with _dag(), pytest.raises(ValueError, match=r"\(max_finding_severity\[1\] of expand\(\)\)"):
        ImageBuilderCreateImageOperator.partial(
            task_id="gate",
            infrastructure_configuration_arn=INFRASTRUCTURE_ARN,
            image_recipe_arn=IMAGE_RECIPE_ARN,
            image_scanning_configuration={"imageScanningEnabled": True},
        ).expand(max_finding_severity=["HIGH", "SEVERE"])


def test_a_required_argument_missing_everywhere_is_reported_when_the_dag_is_parsed():
    with _dag(), pytest.raises(TypeError, match="missing keyword argument 'infrastructure_configuration_arn'"):
        ImageBuilderCreateImageOperator.partial(task_id="build").expand(image_recipe_arn=[IMAGE_RECIPE_ARN])


def test_pipeline_arguments_are_checked_when_the_dag_is_parsed():
    with _dag(), pytest.raises(InvalidCreateImageRequest, match=r"'start' \(image_pipeline_arn\[1\] of expand\(\)\)"):
        ImageBuilderStartPipelineExecutionOperator.partial(task_id="start").expand(
            image_pipeline_arn=[PIPELINE_ARN, "arn:aws:s3:::bucket"]
        )
    with _dag(), pytest.raises(InvalidCreateImageRequest, match="tags"):
        ImageBuilderStartPipelineExecutionOperator.partial(task_id="start", tags={"aws:x": "v"}).expand(
            image_pipeline_arn=[PIPELINE_ARN]
        )


@pytest.mark.filterwarnings("ignore:Task 'build' was never mapped:UserWarning")  # Airflow's, on its own error
def test_airflow_checks_its_own_rules_first():
    with _dag(), pytest.raises(TypeError, match="unexpected keyword argument 'recipe'"):
        ImageBuilderCreateImageOperator.partial(
            task_id="build", infrastructure_configuration_arn=INFRASTRUCTURE_ARN, image_recipe_arn=BAD_RECIPE
        ).expand(recipe=[IMAGE_RECIPE_ARN])


def test_a_subclass_with_an_init_of_its_own_is_left_to_its_init():
    # Its arguments may come otherwise than through the provider's signature: here a default it sets itself.
    class GoldenBuild(ImageBuilderCreateImageOperator):
        def __init__(self, *, shard: str = "0", **kwargs):
            kwargs.setdefault("infrastructure_configuration_arn", INFRASTRUCTURE_ARN)
            super().__init__(tags={"shard": shard}, **kwargs)

    class Checked(ImageBuilderCreateImageOperator):  # no __init__ of its own: the provider's checks apply
        pass

    with _dag() as dag:
        GoldenBuild.partial(task_id="golden").expand(image_recipe_arn=[IMAGE_RECIPE_ARN])
        with pytest.raises(InvalidCreateImageRequest, match=r"\(image_recipe_arn\[0\] of expand\(\)\)"):
            Checked.partial(task_id="checked", infrastructure_configuration_arn=INFRASTRUCTURE_ARN).expand(
                image_recipe_arn=[BAD_RECIPE]
            )
    golden = dag.task_dict["golden"].unmap({"image_recipe_arn": IMAGE_RECIPE_ARN})
    assert (golden.infrastructure_configuration_arn, golden.tags) == (INFRASTRUCTURE_ARN, {"shard": "0"})
    with pytest.raises(InvalidCreateImageRequest, match="imageRecipeArn"):  # and its __init__ checks at run time
        dag.task_dict["golden"].unmap({"image_recipe_arn": BAD_RECIPE})


def test_mapped_sensors_are_checked_when_the_dag_is_parsed():
    from airflow_imagebuilder.sensors import ImageBuilderImageSensor

    with _dag() as dag:
        builds = ImageBuilderCreateImageOperator.partial(
            task_id="build", infrastructure_configuration_arn=INFRASTRUCTURE_ARN
        ).expand(image_recipe_arn=[IMAGE_RECIPE_ARN])
        ImageBuilderImageSensor.partial(task_id="wait", api_retry={"max_attempts": 3}).expand(
            image_build_version_arn=builds.output
        )
        with pytest.raises(ValueError, match=r"^gate: api_retry: unknown keys \['bogus'\]"):
            ImageBuilderImageSensor.partial(task_id="gate", api_retry={"bogus": 1}).expand(
                image_build_version_arn=builds.output
            )
        with pytest.raises(ValueError, match=r"gate2 \(max_finding_severity\[1\] of expand\(\)\).*not a severity"):
            ImageBuilderImageSensor.partial(task_id="gate2", image_build_version_arn="arn:aws:imagebuilder:x").expand(
                max_finding_severity=["HIGH", "SEVERE"]
            )
    assert "wait" in dag.task_dict
