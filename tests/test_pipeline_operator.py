"""ImageBuilderStartPipelineExecutionOperator through Airflow against a strict, seeded emulator over HTTP.

One execution per logical date whatever happens to the task: lost responses, retries, reruns, backfills.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from airflow_imagebuilder.testing.examples import seed_example_resources
from tests.conftest import aws_connection, load_dag, task_states, xcom

pytestmark = pytest.mark.usefixtures("airflow_db")
NIGHT = dt.datetime(2026, 11, 20, 2, tzinfo=dt.timezone.utc)


@pytest.fixture
def seeded(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, dict[str, str]]]:
    """A strict emulator with short phases, seeded like infrastructure code would, wired to ``aws_default``."""
    from airflow_imagebuilder.testing import ImageBuilderEmulator

    with ImageBuilderEmulator(phase_seconds=0.05, validate_responses=True, strict=True) as emulator:
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection(emulator.endpoint_url))
        client = boto3.client("imagebuilder", endpoint_url=emulator.endpoint_url, region_name="us-east-1")
        yield emulator, seed_example_resources(client)


def run(monkeypatch: pytest.MonkeyPatch, night: dt.datetime = NIGHT, **env: str) -> Any:
    for name in ("IB_PIPELINE", "IB_WAIT", "IB_DEFERRABLE", "IB_RETRIES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_dag("pipeline_run.py", "ib_pipeline_run").test(logical_date=night, run_after=night)


def executions_per_night(emulator: Any) -> Counter:
    """How many images the pipeline built per ``night`` tag."""
    return Counter(emulator.state.build(arn).request.get("tags", {}).get("night") for arn in emulator.images())


def starts(emulator: Any) -> list[Any]:
    return emulator.journal("StartImagePipelineExecution")


def test_an_execution_is_started_followed_and_its_outputs_pushed(seeded, monkeypatch):
    emulator, arns = seeded
    dag_run = run(monkeypatch)
    assert task_states(dag_run) == {"start": "success", "follow": "success"}
    [arn] = emulator.images()
    image = boto3.client("imagebuilder", endpoint_url=emulator.endpoint_url, region_name="us-east-1").get_image(
        imageBuildVersionArn=arn
    )["image"]
    assert image["sourcePipelineArn"] == arns["pipeline"] and image["tags"]["night"] == "2026-11-20"
    assert xcom(dag_run, "start") == arn == xcom(dag_run, "follow")
    assert set(xcom(dag_run, "start", "ami_ids")) == {"us-east-1", "eu-west-1"}
    assert len(xcom(dag_run, "start", "client_token")) == 36


@pytest.mark.parametrize("deferrable", ["0", "1"])
def test_a_lost_start_response_is_retried_with_the_same_token(seeded, monkeypatch, deferrable):
    emulator, _ = seeded
    emulator.add_fault("StartImagePipelineExecution", drop_response=True, count=1)
    dag_run = run(monkeypatch, IB_DEFERRABLE=deferrable)
    assert task_states(dag_run)["start"] == "success"
    assert [entry.outcome for entry in starts(emulator)] == ["dropped", "ok"]
    assert len({entry.client_token for entry in starts(emulator)}) == 1
    assert executions_per_night(emulator) == {"2026-11-20": 1}


def test_a_rerun_and_a_five_night_backfill_leave_one_execution_per_night(seeded, monkeypatch):
    emulator, _ = seeded
    nights = [NIGHT + dt.timedelta(days=offset) for offset in range(5)]
    for _ in range(2):  # the second pass reruns every night
        for night in nights:
            assert task_states(run(monkeypatch, night))["start"] == "success"
    assert executions_per_night(emulator) == {night.date().isoformat(): 1 for night in nights}


def test_a_failed_execution_is_built_anew_by_the_retry(seeded, monkeypatch):
    emulator, _ = seeded
    emulator.fail_next_builds("BUILDING", reason="Workflow Execution ID: wf-1 failed with reason: disk full")
    dag_run = run(monkeypatch, IB_RETRIES="1")
    assert task_states(dag_run)["start"] == "success"
    assert sorted(emulator.images().values()) == ["AVAILABLE", "FAILED"]
    assert len({entry.client_token for entry in starts(emulator)}) == 2


def test_a_disabled_pipeline_fails_at_once_without_airflow_retries(seeded, monkeypatch, capfd):
    emulator, arns = seeded
    client = boto3.client("imagebuilder", endpoint_url=emulator.endpoint_url, region_name="us-east-1")
    client.update_image_pipeline(
        imagePipelineArn=arns["pipeline"],
        imageRecipeArn=arns["recipe"],
        infrastructureConfigurationArn=arns["infrastructure"],
        status="DISABLED",
    )
    dag_run = run(monkeypatch, IB_RETRIES="2")
    assert task_states(dag_run)["start"] == "failed"
    [ti] = [ti for ti in dag_run.get_task_instances() if ti.task_id == "start"]
    assert ti.try_number == 1
    assert not starts(emulator)
    assert f"Image pipeline {arns['pipeline']} is DISABLED" in capfd.readouterr().out


def test_a_pipeline_that_does_not_exist_fails_at_once(seeded, monkeypatch, capfd):
    emulator, _ = seeded
    dag_run = run(monkeypatch, IB_PIPELINE="no-such-pipeline", IB_RETRIES="2")
    assert task_states(dag_run)["start"] == "failed"
    [ti] = [ti for ti in dag_run.get_task_instances() if ti.task_id == "start"]
    assert ti.try_number == 1 and not starts(emulator)
    assert "GetImagePipeline failed with ResourceNotFoundException" in capfd.readouterr().out


def test_a_templated_pipeline_arn_that_renders_invalid_makes_no_call(seeded, monkeypatch, capfd):
    emulator, _ = seeded
    seeding_calls = len(emulator.journal())
    dag_run = run(monkeypatch, IB_PIPELINE="Not Valid!", IB_RETRIES="2")
    assert task_states(dag_run)["start"] == "failed"
    assert emulator.journal()[seeding_calls:] == []
    output = capfd.readouterr().out
    assert "start: image_pipeline_arn='arn:aws:imagebuilder:" in output
    assert "image-pipeline/Not Valid!' must be an image pipeline ARN (pattern ^arn:" in output


def test_resource_in_use_is_retried_briefly_then_a_retryable_failure_naming_the_pipeline(seeded, monkeypatch, capfd):
    emulator, arns = seeded
    emulator.add_fault("StartImagePipelineExecution", code="ResourceInUseException")
    dag_run = run(monkeypatch)
    assert task_states(dag_run)["start"] == "failed"
    assert 2 <= len(starts(emulator)) <= 4
    output = capfd.readouterr().out
    assert f"Image pipeline {arns['pipeline']} is in use" in output


def test_literal_pipeline_arns_are_checked_when_the_dag_is_parsed():
    from airflow_imagebuilder.exceptions import InvalidCreateImageRequest
    from airflow_imagebuilder.operators import ImageBuilderStartPipelineExecutionOperator

    with pytest.raises(
        InvalidCreateImageRequest,
        match=r"^t: image_pipeline_arn='arn:aws:s3:::bucket' must be an image pipeline ARN \(pattern \^arn:",
    ):
        ImageBuilderStartPipelineExecutionOperator(task_id="t", image_pipeline_arn="arn:aws:s3:::bucket")
    with pytest.raises(InvalidCreateImageRequest, match="tags"):
        ImageBuilderStartPipelineExecutionOperator(
            task_id="t",
            image_pipeline_arn="arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/p",
            tags={"aws:reserved": "x"},
        )


def test_a_rerun_after_the_pipeline_changed_builds_anew_and_then_reuses_again(seeded, monkeypatch):
    emulator, arns = seeded
    client = boto3.client("imagebuilder", endpoint_url=emulator.endpoint_url, region_name="us-east-1")
    assert task_states(run(monkeypatch))["start"] == "success"
    patched = client.create_image_recipe(
        name="golden-base",
        semanticVersion="1.0.1",
        parentImage="arn:aws:imagebuilder:us-east-1:aws:image/amazon-linux-2023-x86/x.x.x",
        components=[{"componentArn": "arn:aws:imagebuilder:us-east-1:aws:component/update-linux/x.x.x"}],
    )["imageRecipeArn"]
    client.update_image_pipeline(
        imagePipelineArn=arns["pipeline"],
        imageRecipeArn=patched,
        infrastructureConfigurationArn=arns["infrastructure"],
        distributionConfigurationArn=arns["distribution"],
    )
    for _ in range(2):  # the first rerun builds the patched recipe, the second reuses that image
        assert task_states(run(monkeypatch))["start"] == "success"
    versions = sorted(
        client.get_image(imageBuildVersionArn=arn)["image"]["imageRecipe"]["version"] for arn in emulator.images()
    )
    assert versions == ["1.0.0", "1.0.1"]
