"""Image pipelines in the emulator: seeded like infrastructure code does, started idempotently, faulted, journaled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import botocore.config
import pytest

from airflow_imagebuilder.testing.processes import local_client
from tests.testing.test_fidelity import seed


@pytest.fixture
def pipeline(imagebuilder_strict_client):
    recipe, infrastructure, distribution = seed(imagebuilder_strict_client, regions=("us-east-1", "eu-west-1"))
    return imagebuilder_strict_client.create_image_pipeline(
        name="Golden-Nightly",
        imageRecipeArn=recipe,
        infrastructureConfigurationArn=infrastructure,
        distributionConfigurationArn=distribution,
        imageTestsConfiguration={"imageTestsEnabled": False},
        imageTags={"Source": "pipeline"},
    )["imagePipelineArn"]


def test_an_execution_builds_an_image_that_names_its_pipeline(
    imagebuilder_strict_emulator, imagebuilder_strict_client, pipeline
):
    client = imagebuilder_strict_client
    arn = client.start_image_pipeline_execution(imagePipelineArn=pipeline, clientToken="night-1", tags={"Date": "d1"})[
        "imageBuildVersionArn"
    ]
    image = client.get_image(imageBuildVersionArn=arn)["image"]
    assert (image["sourcePipelineArn"], image["sourcePipelineName"], image["buildType"]) == (
        pipeline,
        "Golden-Nightly",
        "USER_INITIATED",
    )
    assert image["tags"] == {"Source": "pipeline", "Date": "d1"}
    imagebuilder_strict_emulator.advance(60 * 5)
    image = client.get_image(imageBuildVersionArn=arn)["image"]
    assert image["state"]["status"] == "AVAILABLE"
    assert [ami["region"] for ami in image["outputResources"]["amis"]] == ["us-east-1", "eu-west-1"]
    described = client.get_image_pipeline(imagePipelineArn=pipeline)["imagePipeline"]
    assert described["lastRunStatus"] == "AVAILABLE" and "dateLastRun" in described
    assert [
        summary["arn"] for summary in client.list_image_pipeline_images(imagePipelineArn=pipeline)["imageSummaryList"]
    ] == [arn]


def test_executions_are_idempotent_per_client_token(imagebuilder_strict_emulator, imagebuilder_strict_client, pipeline):
    client = imagebuilder_strict_client
    imagebuilder_strict_emulator.fail_next_builds(phase="BUILDING", reason="boom")
    first = client.start_image_pipeline_execution(imagePipelineArn=pipeline, clientToken="same")["imageBuildVersionArn"]
    imagebuilder_strict_emulator.advance(60 * 3)
    assert imagebuilder_strict_emulator.state.status(first) == "FAILED"
    again = client.start_image_pipeline_execution(imagePipelineArn=pipeline, clientToken="same")
    assert again["imageBuildVersionArn"] == first  # also after FAILED
    with pytest.raises(client.exceptions.IdempotentParameterMismatchException, match="same"):
        client.start_image_pipeline_execution(imagePipelineArn=pipeline, clientToken="same", tags={"other": "1"})
    second = client.start_image_pipeline_execution(imagePipelineArn=pipeline, clientToken="next")[
        "imageBuildVersionArn"
    ]
    assert second.endswith("/2") and len(imagebuilder_strict_emulator.state.image_arns()) == 2


def test_a_lost_start_response_retried_with_the_same_token_starts_one_execution(imagebuilder_strict_emulator, pipeline):
    client = local_client("imagebuilder", imagebuilder_strict_emulator.endpoint_url)
    imagebuilder_strict_emulator.add_fault("StartImagePipelineExecution", drop_response=True, count=1)
    arn = client.start_image_pipeline_execution(imagePipelineArn=pipeline, clientToken="lost")["imageBuildVersionArn"]
    journal = imagebuilder_strict_emulator.journal("StartImagePipelineExecution")
    assert [entry.outcome for entry in journal] == ["dropped", "ok"]
    assert [entry.image_arn for entry in journal] == [arn, arn]
    assert imagebuilder_strict_emulator.images() == {arn: "PENDING"}


def test_disabled_missing_and_in_use_pipelines(imagebuilder_strict_emulator, imagebuilder_strict_client, pipeline):
    client = imagebuilder_strict_client
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.start_image_pipeline_execution(imagePipelineArn=pipeline.replace("golden-nightly", "other"))
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.list_image_pipeline_images(imagePipelineArn=pipeline.replace("golden-nightly", "other"))
    imagebuilder_strict_emulator.add_fault("StartImagePipelineExecution", code="ResourceInUseException", count=1)
    with pytest.raises(client.exceptions.ResourceInUseException):
        client.start_image_pipeline_execution(imagePipelineArn=pipeline)
    current = client.get_image_pipeline(imagePipelineArn=pipeline)["imagePipeline"]
    client.update_image_pipeline(
        imagePipelineArn=pipeline,
        imageRecipeArn=current["imageRecipeArn"],
        infrastructureConfigurationArn=current["infrastructureConfigurationArn"],
        status="DISABLED",
    )
    assert client.get_image_pipeline(imagePipelineArn=pipeline)["imagePipeline"]["status"] == "DISABLED"
    # As the API reference says: a manual start runs whether the pipeline is enabled or disabled.
    started = client.start_image_pipeline_execution(imagePipelineArn=pipeline, clientToken="disabled-start")
    assert started["imageBuildVersionArn"]
    with pytest.raises(client.exceptions.ResourceDependencyException):
        client.delete_infrastructure_configuration(
            infrastructureConfigurationArn=current["infrastructureConfigurationArn"]
        )
    client.delete_image_pipeline(imagePipelineArn=pipeline)
    assert client.list_image_pipelines()["imagePipelineList"] == []


def test_pipeline_names_are_unique_and_lists_paginate(imagebuilder_strict_client, pipeline):
    client = imagebuilder_strict_client
    current = client.get_image_pipeline(imagePipelineArn=pipeline)["imagePipeline"]
    with pytest.raises(client.exceptions.ResourceAlreadyExistsException):
        client.create_image_pipeline(
            name="golden-nightly",
            imageRecipeArn=current["imageRecipeArn"],
            infrastructureConfigurationArn=current["infrastructureConfigurationArn"],
        )
    for index in range(3):
        client.start_image_pipeline_execution(imagePipelineArn=pipeline, clientToken=f"page-{index}")
    paginator = client.get_paginator("list_image_pipeline_images")
    pages = list(paginator.paginate(imagePipelineArn=pipeline, PaginationConfig={"PageSize": 2}))
    assert [len(page["imageSummaryList"]) for page in pages] == [2, 1]
    with pytest.raises(client.exceptions.InvalidPaginationTokenException):
        client.list_image_pipeline_images(imagePipelineArn=pipeline, nextToken="not-a-token")


def test_awscli_seeds_and_builds_in_strict_mode(imagebuilder_strict_emulator):
    aws = Path(sys.executable).with_name("aws")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    base = [
        str(aws),
        "imagebuilder",
        "--endpoint-url",
        imagebuilder_strict_emulator.endpoint_url,
        "--region",
        "us-east-1",
    ]

    def aws_cli(*args):
        done = subprocess.run([*base, *args], env=env, capture_output=True, text=True, check=True)
        return json.loads(done.stdout)

    recipe = aws_cli(
        "create-image-recipe",
        "--name",
        "Golden-Base",
        "--semantic-version",
        "1.0.0",
        "--parent-image",
        "ami-0123456789abcdef0",
        "--components",
        "componentArn=arn:aws:imagebuilder:us-east-1:aws:component/update-linux/x.x.x",
    )["imageRecipeArn"]
    infrastructure = aws_cli(
        "create-infrastructure-configuration", "--name", "Build", "--instance-profile-name", "ImageBuilderInstance"
    )["infrastructureConfigurationArn"]
    distribution = aws_cli(
        "create-distribution-configuration",
        "--name",
        "Regions",
        "--distributions",
        json.dumps([{"region": "us-east-1", "amiDistributionConfiguration": {}}]),
    )["distributionConfigurationArn"]
    arn = aws_cli(
        "create-image",
        "--image-recipe-arn",
        recipe,
        "--infrastructure-configuration-arn",
        infrastructure,
        "--distribution-configuration-arn",
        distribution,
    )["imageBuildVersionArn"]
    assert aws_cli("get-image", "--image-build-version-arn", arn)["image"]["version"] == "1.0.0/1"
    listed = aws_cli("list-image-build-versions", "--image-version-arn", arn.rsplit("/", 1)[0])
    assert [summary["arn"] for summary in listed["imageSummaryList"]] == [arn]
    missing = subprocess.run(
        [
            *base,
            "create-image",
            "--image-recipe-arn",
            recipe.replace("golden-base", "nope"),
            "--infrastructure-configuration-arn",
            infrastructure,
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert missing.returncode != 0 and "ResourceNotFoundException" in missing.stderr


def test_control_api_reaches_pipeline_operations(imagebuilder_strict_emulator, pipeline):
    from airflow_imagebuilder.testing import EmulatorControl

    control = EmulatorControl(imagebuilder_strict_emulator.endpoint_url)
    control.add_fault("StartImagePipelineExecution", code="ServiceUnavailableException", count=1)
    client = boto3.client(
        "imagebuilder",
        endpoint_url=imagebuilder_strict_emulator.endpoint_url,
        region_name="us-east-1",
        config=botocore.config.Config(retries={"total_max_attempts": 1}),
    )
    with pytest.raises(client.exceptions.ServiceUnavailableException):
        client.start_image_pipeline_execution(imagePipelineArn=pipeline, clientToken="t")
    arn = client.start_image_pipeline_execution(imagePipelineArn=pipeline, clientToken="t")["imageBuildVersionArn"]
    assert [entry["outcome"] for entry in control.journal("StartImagePipelineExecution")] == [
        "ServiceUnavailableException",
        "ok",
    ]
    assert control.images() == {arn: "PENDING"}
