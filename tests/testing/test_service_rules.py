"""Request handling the emulator shares with Image Builder, where it used to be kinder (or stricter) than AWS.

One test (or a few) per item of issue 24, each through boto3 or the AWS CLI over HTTP, each citing the model or
the AWS documentation it follows.  Every successful response is also checked against botocore's output shapes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request

import boto3
import pytest
import time_machine
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from airflow_imagebuilder.testing import ImageBuilderEmulator, ManualClock
from airflow_imagebuilder.testing.processes import ServiceProcess, free_port
from tests.shape_check import ResponseShapeRecorder

ACCOUNT_ARN = "arn:aws:imagebuilder:us-east-1:123456789012"
COMPONENT = "arn:aws:imagebuilder:us-east-1:aws:component/update-linux/x.x.x"
KEY, SECRET = "AKIAEMULATORTEST", "emulator-secret"


def client_for(endpoint_url, key="testing", secret="testing", region="us-east-1"):
    client = boto3.client(
        "imagebuilder",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
    )
    client.shapes = ResponseShapeRecorder(client)
    return client


def error_of(call, *args, **kwargs):
    """(HTTP status, error code, message) of a call that must fail."""
    with pytest.raises(boto3.client("imagebuilder", region_name="us-east-1").exceptions.ClientError) as caught:
        call(*args, **kwargs)
    error = caught.value.response
    return error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"], error["Error"]["Message"]


@pytest.fixture
def signed_emulator():
    with ImageBuilderEmulator(clock=ManualClock(), validate_responses=True, credentials={KEY: SECRET}) as emulator:
        yield emulator


# ---------------------------------------------------------------- 1. signatures
def test_1_with_credentials_a_wrong_secret_an_unknown_key_and_a_changed_body_are_refused(signed_emulator):
    """SigV4 as the service's front door checks it (AWS General Reference, "Signature Version 4": the service
    recomputes the signature from the request it received; a mismatch is ``InvalidSignatureException``, an access
    key it does not know ``UnrecognizedClientException``, both HTTP 403 on rest-json services)."""
    good = client_for(signed_emulator.endpoint_url, KEY, SECRET)
    assert good.list_image_recipes()["imageRecipeSummaryList"] == []
    assert good.shapes.violations == []

    wrong_secret = client_for(signed_emulator.endpoint_url, KEY, "not-the-secret")
    status, code, message = error_of(wrong_secret.list_image_recipes)
    assert (status, code) == (403, "InvalidSignatureException")
    assert message.startswith("The request signature we calculated does not match the signature you provided.")

    unknown = client_for(signed_emulator.endpoint_url, "AKIAUNKNOWN", SECRET)
    assert error_of(unknown.list_image_recipes) == (
        403,
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    )

    tampered = client_for(signed_emulator.endpoint_url, KEY, SECRET)

    def change_body(request, **_):
        request.body = request.body.replace(b"golden", b"silver")

    tampered.meta.events.register("before-send.imagebuilder", change_body)
    status, code, _ = error_of(
        tampered.create_infrastructure_configuration, name="golden", instanceProfileName="ImageBuilderInstance"
    )
    assert (status, code) == (403, "InvalidSignatureException")
    outcomes = [entry.outcome for entry in signed_emulator.journal()]
    assert outcomes == ["ok", "InvalidSignatureException", "UnrecognizedClientException", "InvalidSignatureException"]
    assert signed_emulator.state.resources == {}  # nothing refused ran


def test_1_with_credentials_given_on_the_command_line_a_stale_date_is_refused():
    """A request dated more than 15 minutes from the service's clock is refused (AWS General Reference,
    "Elements of an AWS API request signature": the time stamp must be within 15 minutes of the AWS system time,
    else ``InvalidSignatureException``, "Signature expired")."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "airflow_imagebuilder.testing",
        "--port",
        str(port),
        "--credentials",
        f"{KEY}:{SECRET}",
    ]
    with ServiceProcess("signed-emulator", command, port, "/_emulator/health") as process:
        client = client_for(process.endpoint_url, KEY, SECRET)
        assert client.list_image_recipes()["imageRecipeSummaryList"] == []
        with time_machine.travel(dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1), tick=True):
            status, code, message = error_of(client.list_image_recipes)
        assert (status, code) == (403, "InvalidSignatureException")
        assert message.startswith("Signature expired: ") and message.endswith(" - 15 min.)")
        with time_machine.travel(dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=20), tick=True):
            status, code, message = error_of(client.list_image_recipes)
        assert (status, code) == (403, "InvalidSignatureException")
        assert message.startswith("Signature not yet current: ")


@pytest.mark.parametrize("credentials", [None, {KEY: SECRET}], ids=["any-signature", "credentials"])
def test_1_a_scope_naming_no_aws_region_or_another_service_is_refused_in_both_modes(credentials):
    """The credential scope must name the service and a region that exists (AWS General Reference, "Create a
    signature": the scope is date/region/service/aws4_request; the front door answers ``InvalidSignatureException``
    "Credential should be scoped to a valid region" / "to correct service")."""
    with ImageBuilderEmulator(clock=ManualClock(), credentials=credentials) as emulator:
        nowhere = client_for(emulator.endpoint_url, KEY, SECRET, region="not-a-region")
        assert error_of(nowhere.list_image_recipes) == (
            403,
            "InvalidSignatureException",
            "Credential should be scoped to a valid region. ",
        )
        request = AWSRequest(method="POST", url=f"{emulator.endpoint_url}/ListImageRecipes", data=b"{}")
        SigV4Auth(Credentials(KEY, SECRET), "ec2", "us-east-1").add_auth(request)  # signed for another service
        prepared = request.prepare()
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(
                urllib.request.Request(prepared.url, prepared.body, dict(prepared.headers), method="POST"), timeout=5
            )
        assert (caught.value.code, caught.value.headers["x-amzn-ErrorType"]) == (403, "InvalidSignatureException")
        message = json.loads(caught.value.read())["message"]
        assert message == "Credential should be scoped to correct service: 'imagebuilder'. "
        assert emulator.state.resources == {}


def test_1_the_aws_cli_is_verified_too(signed_emulator):
    """The AWS CLI signs with botocore as boto3 does: the right keys pass, a wrong secret is refused."""
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": KEY}
    command = ["aws", "imagebuilder", "list-image-recipes", "--endpoint-url", signed_emulator.endpoint_url]
    ok = subprocess.run(command, env={**env, "AWS_SECRET_ACCESS_KEY": SECRET}, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    refused = subprocess.run(command, env={**env, "AWS_SECRET_ACCESS_KEY": "wrong"}, capture_output=True, text=True)
    assert refused.returncode != 0 and "(InvalidSignatureException)" in refused.stderr


# ---------------------------------------------------------------- 2-10. requests and responses
@pytest.fixture
def strict_client():
    with ImageBuilderEmulator(phase_seconds=60, clock=ManualClock(), validate_responses=True, strict=True) as emulator:
        client = client_for(emulator.endpoint_url)
        client.emulator = emulator
        yield client
    assert client.shapes.violations == []


@pytest.fixture
def lenient_client():
    with ImageBuilderEmulator(phase_seconds=60, clock=ManualClock(), validate_responses=True) as emulator:
        client = client_for(emulator.endpoint_url)
        client.emulator = emulator
        yield client
    assert client.shapes.violations == []


def image_recipe(client, name="golden-base", version="1.0.0", **overrides):
    request = {
        "name": name,
        "semanticVersion": version,
        "parentImage": "ami-0123456789abcdef0",
        "components": [{"componentArn": COMPONENT}],
    }
    return client.create_image_recipe(**(request | overrides))


def infrastructure(client):
    return client.create_infrastructure_configuration(name="build-infra", instanceProfileName="ImageBuilderInstance")[
        "infrastructureConfigurationArn"
    ]


def test_2_an_update_cannot_change_the_pipeline_recipe_type(strict_client):
    """UpdateImagePipeline, the model's documentation: "The recipe must be the same type, image or container, as
    the pipeline's current recipe"."""
    recipe = image_recipe(strict_client)["imageRecipeArn"]
    container = strict_client.create_container_recipe(
        name="base-container",
        semanticVersion="1.0.0",
        containerType="DOCKER",
        parentImage="amazonlinux:2023",
        components=[{"componentArn": COMPONENT}],
        targetRepository={"service": "ECR", "repositoryName": "golden"},
        dockerfileTemplateData="FROM {{{ imagebuilder:parentImage }}}\n{{{ imagebuilder:environments }}}",
    )["containerRecipeArn"]
    infra = infrastructure(strict_client)
    pipeline = strict_client.create_image_pipeline(
        name="golden", imageRecipeArn=recipe, infrastructureConfigurationArn=infra
    )["imagePipelineArn"]
    status, code, message = error_of(
        strict_client.update_image_pipeline,
        imagePipelineArn=pipeline,
        containerRecipeArn=container,
        infrastructureConfigurationArn=infra,
    )
    assert (status, code) == (400, "InvalidRequestException")
    assert "containerRecipeArn is not valid: the recipe must be the same type, image or container" in message
    got = strict_client.get_image_pipeline(imagePipelineArn=pipeline)["imagePipeline"]
    assert got["imageRecipeArn"] == recipe and "containerRecipeArn" not in got
    strict_client.update_image_pipeline(
        imagePipelineArn=pipeline, imageRecipeArn=recipe, infrastructureConfigurationArn=infra
    )


def test_2_an_update_names_the_recipe(strict_client):
    """UpdateImagePipeline, the API reference: "You must specify exactly one recipe for your image, using either a
    containerRecipeArn or an imageRecipeArn", and it "does not support selective updates": a request without a
    recipe does not keep the current one."""
    recipe = image_recipe(strict_client)["imageRecipeArn"]
    infra = infrastructure(strict_client)
    pipeline = strict_client.create_image_pipeline(
        name="golden", imageRecipeArn=recipe, infrastructureConfigurationArn=infra
    )["imagePipelineArn"]
    status, code, message = error_of(
        strict_client.update_image_pipeline, imagePipelineArn=pipeline, infrastructureConfigurationArn=infra
    )
    assert (status, code) == (400, "InvalidRequestException")
    assert "You must specify exactly one recipe for your image" in message


def test_3_a_recipe_lists_each_component_once(lenient_client):
    """CreateImageRecipe, the model's ``components``: "You can specify each component only one time in a recipe"
    (another version of the same component is the same component)."""
    twice = [{"componentArn": COMPONENT}, {"componentArn": COMPONENT.replace("x.x.x", "1.0.0")}]
    status, code, message = error_of(image_recipe, lenient_client, components=twice)
    assert (status, code) == (400, "InvalidParameterValueException")
    assert message.startswith("The value supplied for parameter 'components[1].componentArn' is not valid.")
    assert "only one time in a recipe" in message
    assert lenient_client.list_image_recipes()["imageRecipeSummaryList"] == []


@pytest.mark.parametrize("version", ["2.x.0", "x.2.x", "1.x.8"])
def test_4_wildcards_stand_only_in_the_rightmost_nodes(lenient_client, version):
    """The user guide's "Semantic versioning in Image Builder": "When you use a wildcard in any node, all nodes to
    the right of the first wildcard must also be wildcards ... x.2.x is not valid, and produces an error" -- an
    invalid parameter, never a not-found naming some other version."""
    for existing in ("2.0.0", "2.1.0"):
        image_recipe(lenient_client, version=existing)
    status, code, message = error_of(
        lenient_client.create_image,
        imageRecipeArn=f"{ACCOUNT_ARN}:image-recipe/golden-base/{version}",
        infrastructureConfigurationArn=infrastructure(lenient_client),
    )
    assert (status, code) == (400, "InvalidParameterValueException")
    assert "parameter 'imageRecipeArn'" in message and "rightmost nodes" in message
    assert lenient_client.emulator.state.image_arns() == []
    arn = lenient_client.create_image(
        imageRecipeArn=f"{ACCOUNT_ARN}:image-recipe/golden-base/2.x.x",
        infrastructureConfigurationArn=f"{ACCOUNT_ARN}:infrastructure-configuration/build-infra",
    )["imageBuildVersionArn"]
    assert arn == f"{ACCOUNT_ARN}:image/golden-base/2.1.0/1"


def test_5_strict_mode_requires_the_components_a_recipe_names(strict_client):
    """Strict mode: a recipe naming a component that does not exist is refused, as the service refuses it (the
    emulator creates no components of its own, so only Amazon-managed ones, owned by ``aws``, exist)."""
    nope = f"{ACCOUNT_ARN}:component/nope/1.0.0/1"
    status, code, message = error_of(image_recipe, strict_client, components=[{"componentArn": nope}])
    assert (status, code, message) == (404, "ResourceNotFoundException", f"The resource ARN '{nope}' does not exist.")
    assert image_recipe(strict_client)["imageRecipeArn"].endswith("/golden-base/1.0.0")


@pytest.mark.parametrize("mode", ["lenient", "strict"])
def test_5_a_parent_image_and_distribution_regions_must_be_real_in_both_modes(mode, request):
    """The model's ``CreateImageRecipeRequest.parentImage``: an AMI ID, an Image Builder image ARN, an SSM parameter
    (``ssm:``) or a Marketplace product ID; a distribution's ``region`` is a Region ("The target Region")."""
    client = request.getfixturevalue(f"{mode}_client")
    status, code, message = error_of(image_recipe, client, parentImage="bogus")
    assert (status, code) == (400, "InvalidParameterValueException")
    assert message.startswith("The value supplied for parameter 'parentImage' is not valid. 'bogus' is not an AMI ID")
    for parent in ("ami-0123abcd", "ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"):
        image_recipe(client, name=f"recipe-{len(parent)}", parentImage=parent)
    status, code, message = error_of(
        client.create_distribution_configuration,
        name="golden-regions",
        distributions=[
            {"region": "us-east-1", "amiDistributionConfiguration": {}},
            {"region": "mars-1", "amiDistributionConfiguration": {}},
        ],
    )
    assert (status, code) == (400, "InvalidParameterValueException")
    assert "parameter 'distributions[1].region'" in message and "'mars-1' is not an AWS Region" in message


def test_6_build_versions_of_every_image_without_an_image_version_arn(lenient_client):
    """ListImageBuildVersions, the model's ``imageVersionArn``: "This parameter is optional. If you don't specify
    it, Image Builder returns build versions for all of the images in your account"."""
    infra = infrastructure(lenient_client)
    arns = [
        lenient_client.create_image(
            imageRecipeArn=image_recipe(lenient_client, name=name)["imageRecipeArn"],
            infrastructureConfigurationArn=infra,
        )["imageBuildVersionArn"]
        for name in ("golden-base", "golden-web")
    ]
    listed = lenient_client.list_image_build_versions()["imageSummaryList"]
    assert [summary["arn"] for summary in listed] == arns
    one = lenient_client.list_image_build_versions(imageVersionArn=arns[1].rsplit("/", 1)[0])["imageSummaryList"]
    assert [summary["arn"] for summary in one] == arns[1:]


def test_7_a_wildcard_recipe_version_is_incremented_by_the_service(lenient_client):
    """The model's ``semanticVersion`` is a ``WildcardVersionNumber``; the user guide's "Create a new version of an
    image recipe": "When you create a recipe with a wildcard version such as 1.0.x, Image Builder automatically
    increments the version (for example, 1.0.1, 1.0.2, 1.0.3...)"; an x left of a number, or a node above 2^30-1,
    is ``InvalidVersionNumberException`` ("out of bounds or does not follow the required syntax")."""
    first = image_recipe(lenient_client, version="1.0.x")["imageRecipeArn"]
    second = image_recipe(lenient_client, version="1.0.x")["imageRecipeArn"]
    minor = image_recipe(lenient_client, version="1.x.x")["imageRecipeArn"]
    assert [arn.rsplit("/", 1)[1] for arn in (first, second, minor)] == ["1.0.0", "1.0.1", "1.1.0"]
    assert lenient_client.get_image_recipe(imageRecipeArn=second)["imageRecipe"]["version"] == "1.0.1"
    for version in ("1.x.0", "1.0.1073741824"):
        status, code, _ = error_of(image_recipe, lenient_client, version=version)
        assert (status, code) == (400, "InvalidVersionNumberException")


def test_8_ami_names_follow_the_distribution_name_template(lenient_client):
    """The model's ``AmiDistributionConfiguration.name`` must include ``{{ imagebuilder:buildDate }}``; the user
    guide's "Tag Image Builder output resources" lists ``{{imagebuilder:buildDate}}`` and
    ``{{imagebuilder:buildVersion}}``; without a name the AMI is named "my-image 2022-10-26T22-30-05.912619Z"."""
    status, code, message = error_of(
        lenient_client.create_distribution_configuration,
        name="fixed-name",
        distributions=[{"region": "us-east-1", "amiDistributionConfiguration": {"name": "golden"}}],
    )
    assert (status, code) == (400, "InvalidParameterValueException")
    assert "must include the {{ imagebuilder:buildDate }} dynamic tag" in message
    distribution = lenient_client.create_distribution_configuration(
        name="golden-regions",
        distributions=[
            {
                "region": "us-east-1",
                "amiDistributionConfiguration": {
                    "name": "golden-{{ imagebuilder:buildDate }}-{{imagebuilder:buildVersion}}"
                },
            },
            {"region": "eu-west-1", "amiDistributionConfiguration": {}},
        ],
    )["distributionConfigurationArn"]
    arn = lenient_client.create_image(
        imageRecipeArn=image_recipe(lenient_client)["imageRecipeArn"],
        infrastructureConfigurationArn=infrastructure(lenient_client),
        distributionConfigurationArn=distribution,
    )["imageBuildVersionArn"]
    lenient_client.emulator.advance(600)
    amis = lenient_client.get_image(imageBuildVersionArn=arn)["image"]["outputResources"]["amis"]
    date = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}-[0-9]{2}-[0-9]{2}\.[0-9]{6}Z"
    assert re.fullmatch(rf"golden-{date}-1", amis[0]["name"]), amis[0]["name"]
    assert re.fullmatch(rf"golden-base {date}", amis[1]["name"]), amis[1]["name"]


def test_9_recipes_and_images_carry_their_latest_version_references(lenient_client):
    """The model's ``latestVersionReferences`` on Create/GetImageRecipe, Create/GetContainerRecipe and
    Create/GetImage: wildcard ARNs for the latest version overall and within the same major, minor and patch."""
    created = image_recipe(lenient_client, version="2.3.4")
    prefix = f"{ACCOUNT_ARN}:image-recipe/golden-base/"
    references = {
        "latestVersionArn": f"{prefix}x.x.x",
        "latestMajorVersionArn": f"{prefix}2.x.x",
        "latestMinorVersionArn": f"{prefix}2.3.x",
        "latestPatchVersionArn": f"{prefix}2.3.4",
    }
    assert created["latestVersionReferences"] == references
    got = lenient_client.get_image_recipe(imageRecipeArn=created["imageRecipeArn"])
    assert got["latestVersionReferences"] == references
    image = lenient_client.create_image(
        imageRecipeArn=created["imageRecipeArn"], infrastructureConfigurationArn=infrastructure(lenient_client)
    )
    image_references = {name: arn.replace(":image-recipe/", ":image/") for name, arn in references.items()}
    assert image["latestVersionReferences"] == image_references
    got = lenient_client.get_image(imageBuildVersionArn=image["imageBuildVersionArn"])
    assert got["latestVersionReferences"] == image_references
    assert {"CreateImageRecipe", "GetImageRecipe", "CreateImage", "GetImage"} <= set(lenient_client.shapes.checked)


def test_10_a_resource_in_use_is_refused_in_the_service_words(strict_client):
    """DeleteImageRecipe's ``ResourceDependencyException``, worded as the service words it."""
    recipe = image_recipe(strict_client)["imageRecipeArn"]
    strict_client.create_image_pipeline(
        name="golden", imageRecipeArn=recipe, infrastructureConfigurationArn=infrastructure(strict_client)
    )
    assert error_of(strict_client.delete_image_recipe, imageRecipeArn=recipe) == (
        400,
        "ResourceDependencyException",
        f"Resource dependency error: The resource ARN '{recipe}' has other resources depended on it.",
    )
