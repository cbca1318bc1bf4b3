"""OpenLineage: dataset names, the facets the operators report, a DAG run emitting them, and no provider at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import boto3
import pytest

from airflow_imagebuilder._decisions import lineage
from airflow_imagebuilder.operators import ImageBuilderCreateImageOperator, ImageBuilderStartPipelineExecutionOperator
from tests.conftest import (
    ACCOUNT,
    CONTAINER_RECIPE_ARN,
    DISTRIBUTION_ARN,
    IMAGE_RECIPE_ARN,
    INFRASTRUCTURE_ARN,
    TESTS,
)

IMAGEBUILDER = f"arn:aws:imagebuilder:us-east-1:{ACCOUNT}"
IMAGE_ARN = f"{IMAGEBUILDER}:image/golden-base/1.0.0/3"
AMIS = [
    {"region": "us-east-1", "image": "ami-0aaaaaaaaaaaaaaaa", "name": "golden-base 1", "accountId": ACCOUNT},
    {"region": "eu-west-1", "image": "ami-0bbbbbbbbbbbbbbbb", "name": "golden-base 1", "accountId": ACCOUNT},
]


def create_operator(**overrides: Any) -> ImageBuilderCreateImageOperator:
    arguments = {
        "task_id": "create",
        "image_recipe_arn": IMAGE_RECIPE_ARN,
        "infrastructure_configuration_arn": INFRASTRUCTURE_ARN,
        "distribution_configuration_arn": DISTRIBUTION_ARN,
    } | overrides
    return ImageBuilderCreateImageOperator(**{key: value for key, value in arguments.items() if value is not None})


class FinishedTask:
    """The task instance the OpenLineage listener hands over, with the XComs the task pushed."""

    def __init__(self, xcoms: dict[str, Any], task_id: str = "create", map_index: int = -1) -> None:
        self.task_id, self.map_index, self.xcoms = task_id, map_index, xcoms
        self.pulls: list[tuple[Any, ...]] = []

    def xcom_pull(self, *, task_ids: str, key: str, map_indexes: int) -> Any:
        self.pulls.append((task_ids, key, map_indexes))
        return self.xcoms.get(key)


def ids(datasets: list[Any]) -> list[tuple[str, str]]:
    return [(dataset.namespace, dataset.name) for dataset in datasets]


# -------------------------------------------------------------------------------------------- names
def test_inputs_of_an_ami_build_are_the_recipe_infrastructure_and_distribution():
    assert lineage.input_datasets(create_operator()) == [
        (IMAGEBUILDER, "image-recipe/golden-base/1.0.0"),
        (IMAGEBUILDER, "infrastructure-configuration/build-infra"),
        (IMAGEBUILDER, "distribution-configuration/golden-dist"),
    ]


def test_inputs_of_a_container_build_without_distribution():
    operator = create_operator(
        image_recipe_arn=None, container_recipe_arn=CONTAINER_RECIPE_ARN, distribution_configuration_arn=None
    )
    assert lineage.input_datasets(operator) == [
        (IMAGEBUILDER, "container-recipe/base-container/2.1.0"),
        (IMAGEBUILDER, "infrastructure-configuration/build-infra"),
    ]


def test_input_of_a_pipeline_execution_is_the_pipeline():
    operator = ImageBuilderStartPipelineExecutionOperator(
        task_id="run", image_pipeline_arn=f"{IMAGEBUILDER}:image-pipeline/golden-nightly"
    )
    assert lineage.input_datasets(operator) == [(IMAGEBUILDER, "image-pipeline/golden-nightly")]


def test_values_that_are_not_arns_name_no_dataset():
    assert lineage.arn_dataset("{{ params.recipe }}") is None
    assert lineage.arn_dataset(None) is None
    assert lineage.arn_dataset("arn:aws:imagebuilder:us-east-1:123456789012") is None


@pytest.mark.parametrize(
    ("partition", "region", "ecr_host"),
    [
        ("aws", "us-east-1", f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"),
        ("aws-cn", "cn-north-1", f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn"),
        ("aws-us-gov", "us-gov-west-1", f"{ACCOUNT}.dkr.ecr.us-gov-west-1.amazonaws.com"),
    ],
)
def test_outputs_are_the_image_then_its_amis_per_region_then_its_container_images(partition, region, ecr_host):
    arn = f"arn:{partition}:imagebuilder:{region}:{ACCOUNT}:image/golden-base/1.0.0/3"
    amis = [{"region": region, "image": "ami-0aaaaaaaaaaaaaaaa"}, {"region": "other-1", "image": "ami-0b"}]
    uris = [f"{ecr_host}/base-container:1.0.0-3"]
    assert lineage.output_datasets(arn, amis, uris) == [
        (f"arn:{partition}:imagebuilder:{region}:{ACCOUNT}", "image/golden-base/1.0.0/3"),
        (f"arn:{partition}:ec2:{region}:", "image/ami-0aaaaaaaaaaaaaaaa"),
        (f"arn:{partition}:ec2:other-1:", "image/ami-0b"),
        (f"arn:{partition}:ecr:{region}:{ACCOUNT}", "repository/base-container:1.0.0-3"),
    ]


def test_a_container_image_outside_ecr_keeps_its_registry_and_path():
    assert lineage.container_image_dataset("aws", "registry.example.com/team/base@sha256:ab") == (
        "registry.example.com",
        "team/base@sha256:ab",
    )


def test_no_image_build_version_no_outputs():
    assert lineage.output_datasets(None, AMIS, []) == []


# ---------------------------------------------------------------------- facets, provider installed
def test_facets_on_start_report_the_inputs():
    from airflow.providers.openlineage.extractors import OperatorLineage

    facets = lineage.facets_on_start(create_operator())
    assert isinstance(facets, OperatorLineage)
    assert ids(facets.inputs) == lineage.input_datasets(create_operator())
    assert facets.outputs == [] and facets.run_facets == {}


def test_facets_on_complete_report_the_amis_and_the_image_build_version():
    from airflow.providers.common.compat.openlineage.facet import ExternalQueryRunFacet

    task = FinishedTask({"return_value": IMAGE_ARN, "amis": AMIS, "container_image_uris": []}, map_index=4)
    facets = lineage.facets_on_complete(create_operator(), task)
    assert ids(facets.inputs) == lineage.input_datasets(create_operator())
    assert ids(facets.outputs) == [
        (IMAGEBUILDER, "image/golden-base/1.0.0/3"),
        ("arn:aws:ec2:us-east-1:", "image/ami-0aaaaaaaaaaaaaaaa"),
        ("arn:aws:ec2:eu-west-1:", "image/ami-0bbbbbbbbbbbbbbbb"),
    ]
    assert facets.run_facets == {
        "externalQuery": ExternalQueryRunFacet(externalQueryId=IMAGE_ARN, source="imagebuilder")
    }
    assert {(task_ids, map_index) for task_ids, _, map_index in task.pulls} == {("create", 4)}


def test_facets_on_complete_report_container_images():
    arn = f"{IMAGEBUILDER}:image/base-container/2.1.0/1"
    uri = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/base-container:2.1.0-1"
    task = FinishedTask({"return_value": arn, "amis": [], "container_image_uris": [uri]})
    operator = create_operator(image_recipe_arn=None, container_recipe_arn=CONTAINER_RECIPE_ARN)
    assert ids(lineage.facets_on_complete(operator, task).outputs) == [
        (IMAGEBUILDER, "image/base-container/2.1.0/1"),
        (f"arn:aws:ecr:us-east-1:{ACCOUNT}", "repository/base-container:2.1.0-1"),
    ]


def test_facets_of_a_task_that_returned_nothing_report_the_inputs_only():
    facets = lineage.facets_on_complete(create_operator(), FinishedTask({"client_token": "t"}))
    assert ids(facets.inputs) == lineage.input_datasets(create_operator())
    assert facets.outputs == [] and facets.run_facets == {}


def test_operators_report_through_the_openlineage_methods():
    task = FinishedTask({"return_value": IMAGE_ARN, "amis": AMIS})
    operator = create_operator()
    assert ids(operator.get_openlineage_facets_on_start().inputs) == lineage.input_datasets(operator)
    assert ids(operator.get_openlineage_facets_on_complete(task).outputs)[:2] == [
        (IMAGEBUILDER, "image/golden-base/1.0.0/3"),
        ("arn:aws:ec2:us-east-1:", "image/ami-0aaaaaaaaaaaaaaaa"),
    ]
    pipeline = ImageBuilderStartPipelineExecutionOperator(
        task_id="run", image_pipeline_arn=f"{IMAGEBUILDER}:image-pipeline/golden-nightly"
    )
    assert ids(pipeline.get_openlineage_facets_on_start().inputs) == [(IMAGEBUILDER, "image-pipeline/golden-nightly")]


# --------------------------------------------------------------------------------- DAG runs
#: Runs tests/dags/create_and_wait.py in a fresh interpreter (OpenLineage reads its configuration once per
#: process) and prints the task states and the OpenLineage modules loaded, as JSON on a marked line.  With
#: ``absent``, the interpreter behaves as if the provider were not installed: no distribution, no modules.
RUN_DAG = textwrap.dedent(
    """
    import datetime as dt, importlib.metadata, importlib.util, json, sys

    OPENLINEAGE = ("openlineage", "airflow.providers.openlineage")


    def without_openlineage(distributions):
        return lambda **kwargs: (
            dist for dist in distributions(**kwargs) if dist.metadata["Name"] != "apache-airflow-providers-openlineage"
        )


    if sys.argv[3] == "absent":
        importlib.metadata.distributions = without_openlineage(importlib.metadata.distributions)
        if sys.version_info < (3, 12):  # where Airflow reads entry points through the backport
            import importlib_metadata

            importlib_metadata.distributions = without_openlineage(importlib_metadata.distributions)
        for name in OPENLINEAGE:
            sys.modules[name] = None  # importing it raises ImportError
    spec = importlib.util.spec_from_file_location("ib_lineage_dag", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    logical_date = dt.datetime.fromisoformat(sys.argv[2])
    dag_run = module.dag.test(logical_date=logical_date, run_after=logical_date)
    states = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()}
    loaded = sorted(
        name
        for name, value in sys.modules.items()
        if value is not None and any(name == root or name.startswith(root + ".") for root in OPENLINEAGE)
    )
    print("RESULT " + json.dumps({"states": states, "loaded": loaded}))
    """
)


def run_dag_in_subprocess(logical_date: str, provider: str, env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", RUN_DAG, str(TESTS / "dags" / "create_and_wait.py"), logical_date, provider],
        env={**os.environ, "IB_WAIT": "1", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, f"DAG run failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return json.loads(lines[-1].removeprefix("RESULT "))


def openlineage_file_transport(folder: Path) -> dict[str, str]:
    """Configuration that enables OpenLineage and writes its events to ``folder/openlineage.jsonl``."""
    return {
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(folder / "openlineage.jsonl"), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "imagebuilder-tests",
        # dag.test serves a task's XCom reads in its own process, which the emitter that OpenLineage forks by
        # default cannot reach; a deployment's task process talks to its supervisor, from the fork too.
        "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "True",
    }


@pytest.mark.usefixtures("airflow_db")
def test_a_dag_run_emits_the_build_lineage(fast_emulator, tmp_path: Path):
    result = run_dag_in_subprocess("2026-06-01T00:00:00+00:00", "installed", openlineage_file_transport(tmp_path))
    events_file = tmp_path / "openlineage.jsonl"
    assert result["states"] == {"create": "success", "wait": "success"}
    [arn] = fast_emulator.state.image_arns()
    events = {
        (event["eventType"], event["job"]["name"]): event
        for event in map(json.loads, events_file.read_text().splitlines())
    }
    start = events[("START", "ib_create_and_wait.create")]
    complete = events[("COMPLETE", "ib_create_and_wait.create")]
    inputs = [
        {"namespace": IMAGEBUILDER, "name": name}
        for name in (
            "image-recipe/golden-base/1.0.0",
            "infrastructure-configuration/build",
            "distribution-configuration/golden",
        )
    ]
    assert [{key: dataset[key] for key in ("namespace", "name")} for dataset in start["inputs"]] == inputs
    assert [{key: dataset[key] for key in ("namespace", "name")} for dataset in complete["inputs"]] == inputs
    outputs = [(dataset["namespace"], dataset["name"]) for dataset in complete["outputs"]]
    client = boto3.client("imagebuilder", endpoint_url=fast_emulator.endpoint_url, region_name="us-east-1")
    ami = client.get_image(imageBuildVersionArn=arn)["image"]["outputResources"]["amis"][0]["image"]
    assert outputs == [(IMAGEBUILDER, arn.split(":", 5)[5]), ("arn:aws:ec2:us-east-1:", f"image/{ami}")]
    external = complete["run"]["facets"]["externalQuery"]
    assert (external["externalQueryId"], external["source"]) == (arn, "imagebuilder")


@pytest.mark.usefixtures("airflow_db")
def test_without_the_openlineage_provider_nothing_of_it_is_imported_and_builds_run(fast_emulator, tmp_path: Path):
    # OpenLineage configured as in the run above: without the provider, nothing reads that configuration.
    result = run_dag_in_subprocess("2026-06-02T00:00:00+00:00", "absent", openlineage_file_transport(tmp_path))
    assert result == {"states": {"create": "success", "wait": "success"}, "loaded": []}
    assert len(fast_emulator.state.image_arns()) == 1
    assert not (tmp_path / "openlineage.jsonl").exists()
