"""The emulator answers like Image Builder where it used to be kinder: one test per known difference."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request

import boto3
import botocore.config
import pytest

from airflow_imagebuilder.testing import ImageBuilderEmulator, ManualClock
from airflow_imagebuilder.testing.shapes import check_shape, operation_shapes
from tests.conftest import IMAGE_RECIPE_ARN, INFRASTRUCTURE_ARN

ACCOUNT_ARN = "arn:aws:imagebuilder:us-east-1:123456789012"
COMPONENT = "arn:aws:imagebuilder:us-east-1:aws:component/update-linux/x.x.x"


def seed(client, recipe="Golden-Base", infrastructure="Build-Infra", regions=("us-east-1",)):
    """Recipe, infrastructure and distribution configuration as infrastructure code creates them."""
    recipe_arn = client.create_image_recipe(
        name=recipe,
        semanticVersion="1.0.0",
        parentImage="ami-0123456789abcdef0",
        components=[{"componentArn": COMPONENT}],
    )["imageRecipeArn"]
    infrastructure_arn = client.create_infrastructure_configuration(
        name=infrastructure, instanceProfileName="ImageBuilderInstance", instanceTypes=["t3.large"]
    )["infrastructureConfigurationArn"]
    distribution_arn = client.create_distribution_configuration(
        name="Golden-Regions",
        distributions=[{"region": region, "amiDistributionConfiguration": {}} for region in regions],
    )["distributionConfigurationArn"]
    return recipe_arn, infrastructure_arn, distribution_arn


def test_1_short_names_never_disguise_an_emulator_failure_as_a_retried_500(imagebuilder_emulator, imagebuilder_client):
    """A name of 1-2 characters cannot exist in Image Builder: not found, never a ServiceException."""
    with pytest.raises(imagebuilder_client.exceptions.ResourceNotFoundException, match="3 to 128 characters"):
        imagebuilder_client.create_image(
            imageRecipeArn=f"{ACCOUNT_ARN}:image-recipe/golden/1.0.0",
            infrastructureConfigurationArn=f"{ACCOUNT_ARN}:infrastructure-configuration/i",
        )
    assert [entry.outcome for entry in imagebuilder_emulator.journal()] == ["ResourceNotFoundException"]


def test_1_an_emulator_bug_is_a_clear_501_that_no_client_retries(imagebuilder_emulator, imagebuilder_client):
    build = imagebuilder_emulator.state.build(
        imagebuilder_client.create_image(
            imageRecipeArn=IMAGE_RECIPE_ARN, infrastructureConfigurationArn=INFRASTRUCTURE_ARN
        )["imageBuildVersionArn"]
    )
    build.recipe.name = "x"  # corrupt the emulator's own state: its response check must catch it
    client = boto3.client(
        "imagebuilder",
        endpoint_url=imagebuilder_emulator.endpoint_url,
        region_name="us-east-1",
        config=botocore.config.Config(retries={"mode": "standard", "max_attempts": 5}),
    )
    with pytest.raises(client.exceptions.ClientError, match="Emulator bug, not a service error") as caught:
        client.get_image(imageBuildVersionArn=build.arn)
    assert caught.value.response["Error"]["Code"] == "EmulatorBug"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501
    assert caught.value.response["ResponseMetadata"]["RetryAttempts"] == 0


def test_2_version_carries_the_build_number(imagebuilder_client):
    arn = imagebuilder_client.create_image(
        imageRecipeArn=IMAGE_RECIPE_ARN, infrastructureConfigurationArn=INFRASTRUCTURE_ARN
    )["imageBuildVersionArn"]
    assert imagebuilder_client.get_image(imageBuildVersionArn=arn)["image"]["version"] == "1.0.0/1"
    listed = imagebuilder_client.list_image_build_versions(imageVersionArn=arn.rsplit("/", 1)[0])
    assert listed["imageSummaryList"][0]["version"] == "1.0.0/1"


def test_3_output_resources_are_present_while_building_and_after_failure(imagebuilder_emulator, imagebuilder_client):
    imagebuilder_emulator.fail_next_builds(phase="BUILDING", reason="Component failed")
    arn = imagebuilder_client.create_image(
        imageRecipeArn=IMAGE_RECIPE_ARN, infrastructureConfigurationArn=INFRASTRUCTURE_ARN
    )["imageBuildVersionArn"]
    assert imagebuilder_client.get_image(imageBuildVersionArn=arn)["image"]["outputResources"] == {"amis": []}
    imagebuilder_emulator.advance(60 * 3)
    image = imagebuilder_client.get_image(imageBuildVersionArn=arn)["image"]
    assert image["state"]["status"] == "FAILED" and image["outputResources"] == {"amis": []}


def test_4_failed_images_carry_a_failure_context(imagebuilder_emulator, imagebuilder_client):
    imagebuilder_emulator.fail_next_builds(phase="TESTING", reason="Test step 'reboot' failed")
    planned = {"imageStatus": "BUILDING", "failedStep": "ApplyHardening"}
    imagebuilder_emulator.fail_next_builds(phase="BUILDING", reason="Hardening failed", failure_context=planned)
    default, custom = (
        imagebuilder_client.create_image(
            imageRecipeArn=IMAGE_RECIPE_ARN, infrastructureConfigurationArn=INFRASTRUCTURE_ARN, clientToken=token
        )["imageBuildVersionArn"]
        for token in ("a", "b")
    )
    imagebuilder_emulator.advance(60 * 6)
    state = imagebuilder_client.get_image(imageBuildVersionArn=default)["image"]["state"]
    assert state["failureContext"]["imageStatus"] == "TESTING"
    assert state["failureContext"]["workflowExecutionId"].startswith("wf-")
    assert ":workflow/test/" in state["failureContext"]["workflowArn"]
    assert imagebuilder_client.get_image(imageBuildVersionArn=custom)["image"]["state"]["failureContext"] == planned


def test_5_creating_comes_between_pending_and_building(imagebuilder_emulator, imagebuilder_client):
    arn = imagebuilder_client.create_image(
        imageRecipeArn=IMAGE_RECIPE_ARN, infrastructureConfigurationArn=INFRASTRUCTURE_ARN
    )["imageBuildVersionArn"]
    seen = []
    for _ in range(4):
        seen.append(imagebuilder_client.get_image(imageBuildVersionArn=arn)["image"]["state"]["status"])
        imagebuilder_emulator.advance(30)
    assert seen == ["PENDING", "CREATING", "BUILDING", "BUILDING"]


def test_6_parameter_rules_answer_invalid_parameter_value(imagebuilder_client):
    with pytest.raises(
        imagebuilder_client.exceptions.InvalidParameterValueException,
        match=r"The value supplied for parameter 'imageRecipeArn' is not valid",
    ):
        imagebuilder_client.create_image(
            imageRecipeArn=f"{ACCOUNT_ARN}:image-recipe/Upper/1.0.0", infrastructureConfigurationArn=INFRASTRUCTURE_ARN
        )
    with pytest.raises(
        imagebuilder_client.exceptions.InvalidParameterValueException,
        match=r"parameter 'tags.<key 'aws:team'>' is not valid",
    ):
        imagebuilder_client.create_image(
            imageRecipeArn=IMAGE_RECIPE_ARN, infrastructureConfigurationArn=INFRASTRUCTURE_ARN, tags={"aws:team": "x"}
        )


def test_7_strict_mode_rejects_resources_that_were_never_created(
    imagebuilder_strict_emulator, imagebuilder_strict_client
):
    client = imagebuilder_strict_client
    with pytest.raises(client.exceptions.ResourceNotFoundException, match=r"image-recipe/golden-base/1\.0\.0"):
        client.create_image(imageRecipeArn=IMAGE_RECIPE_ARN, infrastructureConfigurationArn=INFRASTRUCTURE_ARN)
    recipe, infrastructure, distribution = seed(client, regions=("us-east-1", "eu-west-1"))
    arn = client.create_image(
        imageRecipeArn=recipe, infrastructureConfigurationArn=infrastructure, distributionConfigurationArn=distribution
    )["imageBuildVersionArn"]
    image = client.get_image(imageBuildVersionArn=arn)["image"]
    # a realistic image: names as created, recipe and infrastructure described in full
    assert (image["name"], image["imageRecipe"]["name"], image["infrastructureConfiguration"]["name"]) == (
        "Golden-Base",
        "Golden-Base",
        "Build-Infra",
    )
    assert image["osVersion"] == "Amazon Linux 2023"
    assert image["imageRecipe"]["components"] == [{"componentArn": COMPONENT}]
    assert image["imageRecipe"]["parentImage"] == "ami-0123456789abcdef0"
    assert image["infrastructureConfiguration"]["instanceTypes"] == ["t3.large"]
    assert image["infrastructureConfiguration"]["instanceProfileName"] == "ImageBuilderInstance"
    imagebuilder_strict_emulator.advance(60 * 6)
    amis = client.get_image(imageBuildVersionArn=arn)["image"]["outputResources"]["amis"]
    assert [ami["region"] for ami in amis] == ["us-east-1", "eu-west-1"]  # from distributions[].region


def test_8_get_image_by_image_version_arn_gives_the_newest_build(imagebuilder_client):
    arns = [
        imagebuilder_client.create_image(
            imageRecipeArn=IMAGE_RECIPE_ARN, infrastructureConfigurationArn=INFRASTRUCTURE_ARN, clientToken=token
        )["imageBuildVersionArn"]
        for token in ("one", "two")
    ]
    version_arn = arns[0].rsplit("/", 1)[0]
    assert imagebuilder_client.get_image(imageBuildVersionArn=version_arn)["image"]["arn"] == arns[1]
    wildcard = version_arn.replace("/1.0.0", "/1.x.x")
    assert imagebuilder_client.get_image(imageBuildVersionArn=wildcard)["image"]["arn"] == arns[1]


def test_9_unsigned_and_malformed_signatures_are_forbidden(imagebuilder_emulator):
    url = f"{imagebuilder_emulator.endpoint_url}/GetImage?imageBuildVersionArn={ACCOUNT_ARN}:image/x-y/1.0.0/1"
    for headers, code in (
        ({}, "MissingAuthenticationTokenException"),
        ({"Authorization": "Bearer abc"}, "IncompleteSignatureException"),
        ({"Authorization": "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/s3/aws4_request"}, "Incomplete"),
    ):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5)
        assert caught.value.code == 403
        assert caught.value.headers["x-amzn-ErrorType"].startswith(code)


def test_9_resources_are_seeded_with_the_service_calls(imagebuilder_client):
    recipe, infrastructure, distribution = seed(imagebuilder_client)
    assert imagebuilder_client.get_image_recipe(imageRecipeArn=recipe)["imageRecipe"]["name"] == "Golden-Base"
    assert [summary["arn"] for summary in imagebuilder_client.list_image_recipes()["imageRecipeSummaryList"]] == [
        recipe
    ]
    got = imagebuilder_client.get_distribution_configuration(distributionConfigurationArn=distribution)
    assert got["distributionConfiguration"]["distributions"][0]["region"] == "us-east-1"
    listed = imagebuilder_client.list_infrastructure_configurations()["infrastructureConfigurationSummaryList"]
    assert [summary["arn"] for summary in listed] == [infrastructure]
    imagebuilder_client.delete_image_recipe(imageRecipeArn=recipe)
    with pytest.raises(imagebuilder_client.exceptions.ResourceNotFoundException):
        imagebuilder_client.get_image_recipe(imageRecipeArn=recipe)


def test_10_cli_sets_faults_planned_failures_and_strict_mode():
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_imagebuilder.testing",
            "--port",
            "0",
            "--strict",
            "--fault",
            "GetImageRecipe:CallRateLimitExceededException:count=1",
            "--fail-next-build",
            "BUILDING:Component failed",
            "--phase-seconds",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert "(strict mode)" in line
        endpoint = line.rsplit(" ", 1)[1].strip()
        client = boto3.client(
            "imagebuilder",
            endpoint_url=endpoint,
            region_name="us-east-1",
            config=botocore.config.Config(retries={"total_max_attempts": 1}),
        )
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            client.create_image(imageRecipeArn=IMAGE_RECIPE_ARN, infrastructureConfigurationArn=INFRASTRUCTURE_ARN)
        recipe, infrastructure, _ = seed(client)
        with pytest.raises(client.exceptions.CallRateLimitExceededException):
            client.get_image_recipe(imageRecipeArn=recipe)
        arn = client.create_image(imageRecipeArn=recipe, infrastructureConfigurationArn=infrastructure)[
            "imageBuildVersionArn"
        ]
        assert client.get_image(imageBuildVersionArn=arn)["image"]["state"]["reason"] == "Component failed"
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_10_every_control_has_a_docstring():
    from airflow_imagebuilder.testing import EmulatorControl, ImageBuilderEmulator

    for cls in (EmulatorControl, ImageBuilderEmulator):
        public = [name for name in vars(cls) if not name.startswith("_")]
        assert public and all(getattr(cls, name).__doc__ for name in public), cls


def test_10_control_api_and_python_api_offer_the_same_controls():
    from airflow_imagebuilder.testing import EmulatorControl

    with ImageBuilderEmulator(clock=ManualClock()) as emulator:
        python_api = {name for name in vars(ImageBuilderEmulator) if not name.startswith("_")}
        control_api = {name for name in vars(EmulatorControl) if not name.startswith("_")}
        assert python_api - control_api == {"start", "stop", "endpoint_url", "state"}
        control = EmulatorControl(emulator.endpoint_url)
        control.set_strict(True)
        control.set_visibility_delay(5)
        control.fail_next_builds("TESTING", "boom", failure_context={"imageStatus": "TESTING"})
        control.add_fault_mix(0.1, 0.0, codes=["ServiceException"])
        assert control.advance(10) == 10
        assert emulator.state.strict and emulator.state.visibility_delay == 5


def test_11_the_pytest_plugin_is_not_registered_by_installing_the_package():
    from importlib.metadata import entry_points

    assert not [entry for entry in entry_points(group="pytest11") if entry.value.startswith("airflow_imagebuilder")]


def test_every_response_of_a_seeded_build_matches_the_model(imagebuilder_emulator, imagebuilder_client):
    recipe, infrastructure, distribution = seed(imagebuilder_client)
    arn = imagebuilder_client.create_image(
        imageRecipeArn=recipe, infrastructureConfigurationArn=infrastructure, distributionConfigurationArn=distribution
    )["imageBuildVersionArn"]
    for _ in range(8):
        response = imagebuilder_client.get_image(imageBuildVersionArn=arn)
        response.pop("ResponseMetadata")
        assert check_shape(response, operation_shapes("GetImage")[1]) == []
        imagebuilder_emulator.advance(45)
