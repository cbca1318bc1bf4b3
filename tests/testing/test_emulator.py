"""The emulator seen through boto3, aiobotocore and awscli, over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions
import pytest
from aiobotocore.session import get_session

from airflow_imagebuilder.testing import EmulatorControl, ImageBuilderEmulator, ManualClock
from airflow_imagebuilder.testing.clock import RealClock
from airflow_imagebuilder.testing.errors import ERROR_STATUS, MODELED_ERRORS
from tests.conftest import CONTAINER_RECIPE_ARN, DISTRIBUTION_ARN, IMAGE_RECIPE_ARN, INFRASTRUCTURE_ARN
from tests.shape_check import ResponseShapeRecorder

REQUEST = {"imageRecipeArn": IMAGE_RECIPE_ARN, "infrastructureConfigurationArn": INFRASTRUCTURE_ARN}


def client_for(emulator, **config):
    return boto3.client(
        "imagebuilder",
        endpoint_url=emulator.endpoint_url,
        region_name="us-east-1",
        config=botocore.config.Config(**config) if config else None,
    )


@pytest.fixture
def recorder(imagebuilder_client):
    return ResponseShapeRecorder(imagebuilder_client)


def test_lifecycle_outputs_and_every_response_matches_botocore_shapes(
    imagebuilder_emulator, imagebuilder_client, recorder
):
    imagebuilder_emulator.state.set_distribution_regions(DISTRIBUTION_ARN, ["us-east-1", "eu-west-1"])
    arn = imagebuilder_client.create_image(
        **REQUEST, distributionConfigurationArn=DISTRIBUTION_ARN, clientToken="t-1", tags={"team": "platform"}
    )["imageBuildVersionArn"]
    assert arn == "arn:aws:imagebuilder:us-east-1:123456789012:image/golden-base/1.0.0/1"
    seen = []
    for _ in range(6):
        seen.append(imagebuilder_client.get_image(imageBuildVersionArn=arn)["image"]["state"]["status"])
        imagebuilder_emulator.advance(30 if seen[-1] in ("PENDING", "CREATING") else 60)
    assert seen == ["PENDING", "CREATING", "BUILDING", "TESTING", "DISTRIBUTING", "INTEGRATING"]
    imagebuilder_emulator.advance(60)
    image = imagebuilder_client.get_image(imageBuildVersionArn=arn)["image"]
    assert image["tags"] == {"team": "platform"}
    assert [ami["region"] for ami in image["outputResources"]["amis"]] == ["us-east-1", "eu-west-1"]
    assert all(ami["image"].startswith("ami-") for ami in image["outputResources"]["amis"])
    listed = imagebuilder_client.list_image_build_versions(imageVersionArn=arn.rsplit("/", 1)[0])
    assert [summary["arn"] for summary in listed["imageSummaryList"]] == [arn]
    assert set(recorder.checked) == {"CreateImage", "GetImage", "ListImageBuildVersions"}
    assert recorder.violations == []


@pytest.mark.parametrize(
    ("regions", "rule"),
    [
        ([], "At least one distribution must be provided."),
        (["us-east-1", "mars-north-1"], "'mars-north-1' is not an AWS Region."),
        (["us-east-1", "us-east-1"], "Region us-east-1 is listed more than once."),
    ],
)
def test_set_distribution_regions_keeps_the_services_rules(imagebuilder_emulator, regions, rule):
    """The control is CreateDistributionConfiguration by ARN: it refuses what the service refuses."""
    with pytest.raises(ValueError, match=rf"^set_distribution_regions: .*{rule}"):
        imagebuilder_emulator.set_distribution_regions(DISTRIBUTION_ARN, regions)


def test_tests_disabled_skip_testing_and_container_recipes_give_uris(
    imagebuilder_emulator, imagebuilder_client, recorder
):
    arn = imagebuilder_client.create_image(
        containerRecipeArn=CONTAINER_RECIPE_ARN,
        infrastructureConfigurationArn=INFRASTRUCTURE_ARN,
        imageTestsConfiguration={"imageTestsEnabled": False},
        clientToken="c-1",
    )["imageBuildVersionArn"]
    seen = []
    for _ in range(6):
        seen.append(imagebuilder_client.get_image(imageBuildVersionArn=arn)["image"]["state"]["status"])
        imagebuilder_emulator.advance(30 if seen[-1] in ("PENDING", "CREATING") else 60)
    assert seen == ["PENDING", "CREATING", "BUILDING", "DISTRIBUTING", "INTEGRATING", "AVAILABLE"]
    image = imagebuilder_client.get_image(imageBuildVersionArn=arn)["image"]
    assert image["type"] == "DOCKER"
    assert image["outputResources"]["containers"] == [
        {"region": "us-east-1", "imageUris": ["123456789012.dkr.ecr.us-east-1.amazonaws.com/base-container:2.1.0-1"]}
    ]
    assert recorder.violations == []


def test_build_numbers_failure_reason_and_cancel(imagebuilder_emulator, imagebuilder_client, recorder):
    imagebuilder_emulator.fail_next_builds(phase="TESTING", reason="Test step 'reboot' failed")
    failed = imagebuilder_client.create_image(**REQUEST, clientToken="a")["imageBuildVersionArn"]
    running = imagebuilder_client.create_image(**REQUEST, clientToken="b")["imageBuildVersionArn"]
    assert failed.endswith("/1") and running.endswith("/2")
    imagebuilder_emulator.advance(60 * 3)
    state = imagebuilder_client.get_image(imageBuildVersionArn=failed)["image"]["state"]
    assert (state["status"], state["reason"]) == ("FAILED", "Test step 'reboot' failed")
    assert state["failureContext"]["imageStatus"] == "TESTING"
    imagebuilder_client.cancel_image_creation(imageBuildVersionArn=running, clientToken="cancel-1")
    assert imagebuilder_client.get_image(imageBuildVersionArn=running)["image"]["state"]["status"] == "CANCELLED"
    with pytest.raises(imagebuilder_client.exceptions.ResourceInUseException, match="CANCELLED"):
        imagebuilder_client.cancel_image_creation(imageBuildVersionArn=running, clientToken="cancel-2")
    assert "CancelImageCreation" in recorder.checked and recorder.violations == []


def test_idempotency_like_aws(imagebuilder_emulator, imagebuilder_client):
    imagebuilder_emulator.fail_next_builds(phase="BUILDING", reason="boom")
    first = imagebuilder_client.create_image(**REQUEST, clientToken="same")["imageBuildVersionArn"]
    imagebuilder_emulator.advance(60 * 2)
    assert imagebuilder_emulator.state.status(first) == "FAILED"
    # same token + same request: the same image, also after it FAILED
    assert imagebuilder_client.create_image(**REQUEST, clientToken="same")["imageBuildVersionArn"] == first
    with pytest.raises(imagebuilder_client.exceptions.IdempotentParameterMismatchException, match="same"):
        imagebuilder_client.create_image(**REQUEST, clientToken="same", tags={"changed": "yes"})
    assert len(imagebuilder_emulator.state.image_arns()) == 1


def test_requests_are_validated_like_the_service(imagebuilder_client):
    with pytest.raises(imagebuilder_client.exceptions.InvalidRequestException, match="exactly one recipe"):
        imagebuilder_client.create_image(**REQUEST, containerRecipeArn=CONTAINER_RECIPE_ARN, clientToken="x")
    with pytest.raises(imagebuilder_client.exceptions.InvalidRequestException, match=r"\(got 0\)"):
        imagebuilder_client.create_image(infrastructureConfigurationArn=INFRASTRUCTURE_ARN)  # token auto-filled
    with pytest.raises(imagebuilder_client.exceptions.InvalidParameterValueException, match="does not match pattern"):
        imagebuilder_client.create_image(
            imageRecipeArn="arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/Upper/1.0.0",
            infrastructureConfigurationArn=INFRASTRUCTURE_ARN,
            clientToken="x",
        )
    with pytest.raises(imagebuilder_client.exceptions.ResourceNotFoundException):
        imagebuilder_client.get_image(
            imageBuildVersionArn="arn:aws:imagebuilder:us-east-1:123456789012:image/no/1.0.0/1"
        )


@pytest.mark.parametrize("code", sorted(MODELED_ERRORS))
def test_each_modeled_error_parses_into_its_boto3_exception(imagebuilder_emulator, imagebuilder_client, code):
    imagebuilder_emulator.add_fault("CreateImage", code=code, message=f"injected {code}", count=1)
    client = client_for(imagebuilder_emulator, retries={"total_max_attempts": 1, "mode": "standard"})
    with pytest.raises(getattr(client.exceptions, code)) as caught:
        client.create_image(**REQUEST, clientToken="tok")
    assert caught.value.response["Error"]["Message"] == f"injected {code}"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == ERROR_STATUS[code]
    assert caught.value.response["ResponseMetadata"]["RequestId"]


def test_each_modeled_error_parses_into_its_aiobotocore_exception(imagebuilder_emulator):
    async def scenario():
        session = get_session()
        async with session.create_client(
            "imagebuilder",
            endpoint_url=imagebuilder_emulator.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}),
        ) as client:
            arn = (await client.create_image(**REQUEST, clientToken="ok"))["imageBuildVersionArn"]
            assert (await client.get_image(imageBuildVersionArn=arn))["image"]["state"]["status"] == "PENDING"
            for code in sorted(MODELED_ERRORS):
                status = ERROR_STATUS[code]
                imagebuilder_emulator.add_fault("GetImage", code=code, count=1)
                with pytest.raises(getattr(client.exceptions, code)) as caught:
                    await client.get_image(imageBuildVersionArn=arn)
                assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status

    asyncio.run(scenario())


def test_503_is_retried_by_botocore_standard_mode(imagebuilder_emulator):
    client = client_for(imagebuilder_emulator, retries={"mode": "standard", "max_attempts": 3})
    imagebuilder_emulator.add_fault("CreateImage", code="ServiceUnavailableException", count=1)
    response = client.create_image(**REQUEST, clientToken="retry-me")
    assert response["ResponseMetadata"]["RetryAttempts"] == 1
    assert [entry.outcome for entry in imagebuilder_emulator.journal("CreateImage")] == [
        "ServiceUnavailableException",
        "ok",
    ]


def test_standard_mode_does_not_retry_the_modeled_429(imagebuilder_emulator):
    """Why the hook retries CallRateLimitExceededException itself."""
    client = client_for(imagebuilder_emulator, retries={"mode": "standard", "max_attempts": 3})
    imagebuilder_emulator.add_fault("CreateImage", code="CallRateLimitExceededException", count=1)
    with pytest.raises(client.exceptions.CallRateLimitExceededException):
        client.create_image(**REQUEST, clientToken="throttled")
    assert len(imagebuilder_emulator.journal("CreateImage")) == 1


def test_lost_response_is_retried_with_the_same_token_and_returns_the_same_image(imagebuilder_emulator):
    client = client_for(imagebuilder_emulator, retries={"mode": "standard", "max_attempts": 3})
    imagebuilder_emulator.add_fault("CreateImage", drop_response=True, count=1)
    arn = client.create_image(**REQUEST, clientToken="lost-once")["imageBuildVersionArn"]
    journal = imagebuilder_emulator.journal("CreateImage")
    assert [entry.outcome for entry in journal] == ["dropped", "ok"]
    assert {entry.client_token for entry in journal} == {"lost-once"}
    assert imagebuilder_emulator.state.image_arns() == [arn]


def test_latency_trips_a_read_timeout(imagebuilder_emulator):
    client = client_for(imagebuilder_emulator, read_timeout=0.2, retries={"mode": "standard", "total_max_attempts": 1})
    imagebuilder_emulator.add_fault("GetImage", latency=1.0, count=1)
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        client.get_image(imageBuildVersionArn="arn:aws:imagebuilder:us-east-1:123456789012:image/x-y/1.0.0/1")


def test_probabilistic_faults_are_reproducible_with_a_seed():
    def outcomes(seed):
        with ImageBuilderEmulator(clock=ManualClock(), seed=seed) as emulator:
            emulator.add_fault("CreateImage", code="ServiceException", probability=0.5)
            client = client_for(emulator, retries={"mode": "standard", "total_max_attempts": 1})
            for index in range(20):
                with contextlib.suppress(client.exceptions.ServiceException):
                    client.create_image(**REQUEST, clientToken=f"t{index}")
            return [entry.outcome for entry in emulator.journal()]

    first = outcomes(7)
    assert first == outcomes(7)
    assert 3 < first.count("ServiceException") < 17


def test_concurrent_creates_are_thread_safe(imagebuilder_emulator):
    arns: list[str] = []

    def worker(offset):
        client = client_for(imagebuilder_emulator)
        for index in range(10):
            arns.append(client.create_image(**REQUEST, clientToken=f"w{offset}-{index}")["imageBuildVersionArn"])

    threads = [threading.Thread(target=worker, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(int(arn.rsplit("/", 1)[1]) for arn in arns) == list(range(1, 41))


def test_awscli_works_against_the_emulator(imagebuilder_emulator):
    aws = Path(sys.executable).with_name("aws")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    base = [str(aws), "imagebuilder", "--endpoint-url", imagebuilder_emulator.endpoint_url, "--region", "us-east-1"]
    created = subprocess.run(
        [
            *base,
            "create-image",
            "--image-recipe-arn",
            IMAGE_RECIPE_ARN,
            "--infrastructure-configuration-arn",
            INFRASTRUCTURE_ARN,
            "--client-token",
            "cli-1",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    arn = json.loads(created.stdout)["imageBuildVersionArn"]
    got = subprocess.run(
        [*base, "get-image", "--image-build-version-arn", arn], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(got.stdout)["image"]["state"]["status"] == "PENDING"


def test_cli_and_control_api():
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_imagebuilder.testing", "--port", "0", "--phase-seconds", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        endpoint = line.rsplit(" ", 1)[1].strip()
        assert endpoint.startswith("http://127.0.0.1:")
        control = EmulatorControl(endpoint)
        assert control.healthy()
        control.add_fault("GetImage", code="ServiceUnavailableException", count=1)
        client = boto3.client(
            "imagebuilder",
            endpoint_url=endpoint,
            region_name="us-east-1",
            config=botocore.config.Config(retries={"mode": "standard", "max_attempts": 3}),
        )
        arn = client.create_image(**REQUEST, clientToken="cli")["imageBuildVersionArn"]
        assert client.get_image(imageBuildVersionArn=arn)["image"]["state"]["status"] == "AVAILABLE"
        assert [entry["outcome"] for entry in control.journal("GetImage")] == ["ServiceUnavailableException", "ok"]
        assert control.images() == {arn: "AVAILABLE"}
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_advance_on_poll_moves_a_build_one_phase_per_get_image_and_nothing_else_moves_it():
    with ImageBuilderEmulator(advance_on_poll=True, phase_seconds=3600) as emulator:
        client = client_for(emulator)
        first = client.create_image(**REQUEST)["imageBuildVersionArn"]
        second = client.create_image(**REQUEST, imageTestsConfiguration={"imageTestsEnabled": False})[
            "imageBuildVersionArn"
        ]
        seen = [client.get_image(imageBuildVersionArn=first)["image"]["state"]["status"] for _ in range(8)]
        phases = ["PENDING", "CREATING", "BUILDING", "TESTING", "DISTRIBUTING", "INTEGRATING"]
        assert seen == [*phases, "AVAILABLE", "AVAILABLE"]
        # the clock moved with the first build's polls, so the second one, started at the same time, is done too
        assert client.get_image(imageBuildVersionArn=second)["image"]["state"]["status"] == "AVAILABLE"
    with pytest.raises(ValueError, match="advance_on_poll moves the clock"):
        ImageBuilderEmulator(advance_on_poll=True, clock=RealClock())
