"""Every response of every implemented operation conforms to botocore's model, for names of every legal length.

Each scenario walks all implemented operations through boto3 over HTTP with generated names (1, 2, 3 and 128
characters, mixed case, spaces), moving the clock through every phase; every 200 response is checked against the
operation's output shape (required members, types, enums, patterns, lengths) and every error must be a code the
service answers with.
"""

from __future__ import annotations

import json

import pytest

from airflow_imagebuilder.testing import ImageBuilderEmulator, ManualClock
from airflow_imagebuilder.testing.backend import ImageBuilderBackend
from airflow_imagebuilder.testing.errors import MODELED_ERRORS
from airflow_imagebuilder.testing.processes import local_client
from tests.shape_check import ResponseShapeRecorder

COMPONENT = "arn:aws:imagebuilder:us-east-1:aws:component/update-linux/x.x.x"
NAMES = {
    "1 character": "A",
    "2 characters": "Ab",
    "3 characters": "aBc",
    "128 characters, mixed case": "Golden" + "x" * 116 + "-AMI_1",
    "mixed case with spaces": "Golden Base Image",
}


class ErrorRecorder:
    """Every non-200 answer: (operation, code)."""

    def __init__(self, client):
        self.errors: list[tuple[str, str]] = []
        client.meta.events.register("after-call.imagebuilder", self._after_call)

    def _after_call(self, http_response, parsed, model, **_):
        if http_response.status_code != 200:
            self.errors.append((model.name, parsed["Error"]["Code"]))


def scenario(emulator, client, name):
    """Call every implemented operation once or more; return the ARNs it created."""
    call = _Caller(client)
    recipe = call(
        "create_image_recipe",
        name=name,
        semanticVersion="1.0.0",
        parentImage="ami-0123456789abcdef0",
        components=[{"componentArn": COMPONENT}],
    )
    container = call(
        "create_container_recipe",
        name=name,
        semanticVersion="2.0.0",
        containerType="DOCKER",
        parentImage="amazonlinux:2023",
        components=[{"componentArn": COMPONENT}],
        targetRepository={"service": "ECR", "repositoryName": "golden"},
        dockerfileTemplateData="FROM {{{ imagebuilder:parentImage }}}\n{{{ imagebuilder:environments }}}",
    )
    infrastructure = call(
        "create_infrastructure_configuration", name=name, instanceProfileName="Profile", instanceTypes=["t3.micro"]
    )
    distribution = call(
        "create_distribution_configuration",
        name=name,
        distributions=[
            {"region": "us-east-1", "amiDistributionConfiguration": {"name": "golden-{{ imagebuilder:buildDate }}"}},
            {"region": "eu-west-1", "amiDistributionConfiguration": {}},
        ],
        tags={"Team": "Platform"},
    )
    if recipe is None:
        # the service refuses such a name: no resources exist, so requests naming them are refused too
        call(
            "create_image",
            imageRecipeArn=_arn("image-recipe", name, "1.0.0"),
            infrastructureConfigurationArn=_arn("infrastructure-configuration", name),
        )
        return
    call("get_image_recipe", imageRecipeArn=recipe["imageRecipeArn"])
    call("list_image_recipes")
    call("get_container_recipe", containerRecipeArn=container["containerRecipeArn"])
    call("list_container_recipes", maxResults=1)
    call(
        "get_infrastructure_configuration",
        infrastructureConfigurationArn=infrastructure["infrastructureConfigurationArn"],
    )
    call("list_infrastructure_configurations")
    call("get_distribution_configuration", distributionConfigurationArn=distribution["distributionConfigurationArn"])
    call("list_distribution_configurations")
    references = {
        "infrastructureConfigurationArn": infrastructure["infrastructureConfigurationArn"],
        "distributionConfigurationArn": distribution["distributionConfigurationArn"],
    }
    emulator.fail_next_builds(phase="DISTRIBUTING", reason="Distribution to eu-west-1 failed")
    failing = call("create_image", imageRecipeArn=recipe["imageRecipeArn"], tags={"Name": name}, **references)
    emulator.plan_scan_findings(
        [{"severity": severity, "package_name": "openssl"} for severity in ("CRITICAL", "HIGH", "MEDIUM", "UNTRIAGED")]
        + [{"severity": "LOW", "fixed_in_version": "2.34-53", "title": name, "score": 2}]
    )
    image = call(
        "create_image",
        imageRecipeArn=recipe["imageRecipeArn"],
        imageScanningConfiguration={"imageScanningEnabled": True},
        **references,
    )
    docker = call("create_image", containerRecipeArn=container["containerRecipeArn"], **references)
    cancelled = call("create_image", imageRecipeArn=recipe["imageRecipeArn"], **references)
    pipeline = call(
        "create_image_pipeline",
        name=name,
        imageRecipeArn=recipe["imageRecipeArn"],
        imageTags={"Source": "pipeline"},
        schedule={"scheduleExpression": "cron(0 4 ? * mon *)"},
        **references,
    )
    started = call("start_image_pipeline_execution", imagePipelineArn=pipeline["imagePipelineArn"], tags={"Run": "1"})
    call("cancel_image_creation", imageBuildVersionArn=cancelled["imageBuildVersionArn"])
    for _ in range(9):
        for created in (failing, image, docker, cancelled, started):
            call("get_image", imageBuildVersionArn=created["imageBuildVersionArn"])
        call("get_image_pipeline", imagePipelineArn=pipeline["imagePipelineArn"])
        call("list_image_pipeline_images", imagePipelineArn=pipeline["imagePipelineArn"], maxResults=1)
        emulator.advance(40)
    for created in (failing, image, docker, cancelled, started):
        workflows = call("list_workflow_executions", imageBuildVersionArn=created["imageBuildVersionArn"], maxResults=1)
        for workflow in workflows["workflowExecutions"]:
            call("get_workflow_execution", workflowExecutionId=workflow["workflowExecutionId"])
            steps = call("list_workflow_step_executions", workflowExecutionId=workflow["workflowExecutionId"])
            for step in steps["steps"]:
                call("get_workflow_step_execution", stepExecutionId=step["stepExecutionId"])
    findings = call("list_image_scan_findings", maxResults=2)
    call("list_image_scan_findings", maxResults=2, nextToken=findings["nextToken"])
    call(
        "list_image_scan_findings",
        filters=[{"name": "imageBuildVersionArn", "values": [image["imageBuildVersionArn"]]}],
    )
    version_arn = image["imageBuildVersionArn"].rsplit("/", 1)[0]
    call("get_image", imageBuildVersionArn=version_arn)
    listed = call("list_image_build_versions", imageVersionArn=version_arn, maxResults=2)
    call("list_image_build_versions", imageVersionArn=version_arn, nextToken=listed["nextToken"])
    call("list_image_build_versions")  # every image's builds
    call(  # a wildcard version: the service picks the next one
        "create_image_recipe",
        name=name,
        semanticVersion="1.x.x",
        parentImage="ami-0123456789abcdef0",
        components=[{"componentArn": COMPONENT}],
    )
    call("list_image_pipelines")
    call(
        "update_image_pipeline",
        imagePipelineArn=pipeline["imagePipelineArn"],
        imageRecipeArn=recipe["imageRecipeArn"],
        infrastructureConfigurationArn=references["infrastructureConfigurationArn"],
        status="DISABLED",
    )
    call("start_image_pipeline_execution", imagePipelineArn=pipeline["imagePipelineArn"])  # runs while DISABLED
    call("delete_image_recipe", imageRecipeArn=recipe["imageRecipeArn"])  # refused: the pipeline depends on it
    call("delete_image_pipeline", imagePipelineArn=pipeline["imagePipelineArn"])
    call("delete_image_recipe", imageRecipeArn=recipe["imageRecipeArn"])
    call("delete_container_recipe", containerRecipeArn=container["containerRecipeArn"])
    call(
        "delete_infrastructure_configuration",
        **{"infrastructureConfigurationArn": references["infrastructureConfigurationArn"]},
    )
    call("delete_distribution_configuration", distributionConfigurationArn=references["distributionConfigurationArn"])


def _arn(kind, name, version=None):
    arn = f"arn:aws:imagebuilder:us-east-1:123456789012:{kind}/{name.lower().replace(' ', '-')}"
    return f"{arn}/{version}" if version else arn


class _Caller:
    def __init__(self, client):
        self.client = client

    def __call__(self, method, **params):
        try:
            return getattr(self.client, method)(**params)
        except self.client.exceptions.ClientError:
            return None


@pytest.mark.parametrize("label", sorted(NAMES))
def test_every_response_conforms_to_the_model(label):
    name = NAMES[label]
    with ImageBuilderEmulator(phase_seconds=60, clock=ManualClock(), validate_responses=True) as emulator:
        client = local_client("imagebuilder", emulator.endpoint_url)
        shapes, errors = ResponseShapeRecorder(client), ErrorRecorder(client)
        scenario(emulator, client, name)
    assert shapes.violations == []
    assert {code for _, code in errors.errors} <= MODELED_ERRORS, errors.errors
    if len(name) < 3:
        assert errors.errors[:4] == [
            (operation, "InvalidParameterValueException")
            for operation in (
                "CreateImageRecipe",
                "CreateContainerRecipe",
                "CreateInfrastructureConfiguration",
                "CreateDistributionConfiguration",
            )
        ]
        assert errors.errors[4] == ("CreateImage", "ResourceNotFoundException")
    else:
        assert set(shapes.checked) == set(ImageBuilderBackend().operations)
        assert errors.errors == [("DeleteImageRecipe", "ResourceDependencyException")]


def test_generated_names_keep_their_case_and_arns_are_lower_case():
    with ImageBuilderEmulator(clock=ManualClock(), validate_responses=True) as emulator:
        client = local_client("imagebuilder", emulator.endpoint_url)
        name = NAMES["mixed case with spaces"]
        arn = client.create_image_recipe(
            name=name,
            semanticVersion="1.0.0",
            parentImage="ami-0123456789abcdef0",
            components=[{"componentArn": COMPONENT}],
        )["imageRecipeArn"]
        assert arn.endswith(":image-recipe/golden-base-image/1.0.0")
        assert client.get_image_recipe(imageRecipeArn=arn)["imageRecipe"]["name"] == name
        assert json.dumps(client.list_image_recipes()["imageRecipeSummaryList"]).count(name) == 1
