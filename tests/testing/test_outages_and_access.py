"""Service-wide conditions of the emulator: outages, denied access keys, held builds, phase durations as ranges.

Each control is checked in-process (Python API), through the control API (:class:`EmulatorControl`) and from the
command line.
"""

from __future__ import annotations

import subprocess
import sys
import time

import boto3
import botocore.config
import botocore.exceptions
import pytest

from airflow_imagebuilder.testing import EmulatorControl, ImageBuilderEmulator, ManualClock
from airflow_imagebuilder.testing.__main__ import parse_phase_seconds
from airflow_imagebuilder.testing.backend import phase_durations
from airflow_imagebuilder.testing.controls import parse_denied_key
from tests.conftest import IMAGE_RECIPE_ARN, INFRASTRUCTURE_ARN

REQUEST = {"imageRecipeArn": IMAGE_RECIPE_ARN, "infrastructureConfigurationArn": INFRASTRUCTURE_ARN}
NO_RETRIES = botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 1})


def client(endpoint_url: str, access_key_id: str = "testing"):
    return boto3.client(
        "imagebuilder",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=access_key_id,
        aws_secret_access_key="secret",
        config=NO_RETRIES,
    )


def error_of(call) -> botocore.exceptions.ClientError:
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        call()
    return raised.value


def test_unavailable_outage_answers_503_to_every_call_without_running_it():
    with ImageBuilderEmulator(phase_seconds=0) as emulator:
        caller = client(emulator.endpoint_url)
        emulator.start_outage("unavailable")
        error = error_of(lambda: caller.create_image(**REQUEST, clientToken="outage"))
        assert error.response["Error"]["Code"] == "ServiceUnavailableException"
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert emulator.images() == {}  # the call was not processed
        emulator.end_outage()
        arn = caller.create_image(**REQUEST, clientToken="outage")["imageBuildVersionArn"]
        assert [entry.outcome for entry in emulator.journal("CreateImage")] == ["ServiceUnavailableException", "ok"]
        assert list(emulator.images()) == [arn]


def test_drop_outage_closes_connections_without_processing():
    with ImageBuilderEmulator(phase_seconds=0) as emulator:
        caller = client(emulator.endpoint_url)
        emulator.start_outage("drop")
        with pytest.raises((botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)):
            caller.create_image(**REQUEST, clientToken="dropped")
        assert emulator.images() == {}
        [entry] = emulator.journal("CreateImage")
        assert (entry.outcome, entry.image_arn) == ("connection-dropped", None)
        emulator.end_outage()
        caller.create_image(**REQUEST, clientToken="dropped")
        assert len(emulator.images()) == 1


def test_outage_mode_is_checked():
    with ImageBuilderEmulator() as emulator, pytest.raises(ValueError, match="not one of unavailable, drop"):
        emulator.start_outage("partial")


def test_denied_access_key_answers_403_to_its_calls_only():
    with ImageBuilderEmulator(phase_seconds=0) as emulator:
        revoked, other = client(emulator.endpoint_url, "AKIAREVOKED"), client(emulator.endpoint_url, "AKIAOTHER")
        arn = other.create_image(**REQUEST, clientToken="before")["imageBuildVersionArn"]
        emulator.deny_access_key("AKIAREVOKED")
        error = error_of(lambda: revoked.get_image(imageBuildVersionArn=arn))
        assert error.response["Error"]["Code"] == "AccessDeniedException"
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert "is not authorized to perform: imagebuilder:GetImage" in error.response["Error"]["Message"]
        assert other.get_image(imageBuildVersionArn=arn)["image"]["arn"] == arn
        denied = [entry for entry in emulator.journal("GetImage") if entry.status == 403]
        assert [(entry.access_key_id, entry.outcome) for entry in denied] == [("AKIAREVOKED", "AccessDeniedException")]
        emulator.allow_access_key("AKIAREVOKED")
        assert revoked.get_image(imageBuildVersionArn=arn)["image"]["arn"] == arn


def test_denied_access_key_with_another_code_and_message():
    with ImageBuilderEmulator(phase_seconds=0) as emulator:
        emulator.deny_access_key("AKIAGONE", code="UnrecognizedClientException", message="The key is invalid.")
        error = error_of(lambda: client(emulator.endpoint_url, "AKIAGONE").create_image(**REQUEST, clientToken="x"))
        assert error.response["Error"] == {"Code": "UnrecognizedClientException", "Message": "The key is invalid."}
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert emulator.images() == {}
        emulator.allow_access_key()  # every key
        client(emulator.endpoint_url, "AKIAGONE").create_image(**REQUEST, clientToken="x")


def test_held_builds_stay_pending_until_released_then_walk_their_phases():
    clock = ManualClock()
    with ImageBuilderEmulator(phase_seconds=1.0, clock=clock) as emulator:
        caller = client(emulator.endpoint_url)
        emulator.hold_builds()
        held = caller.create_image(**REQUEST, clientToken="held")["imageBuildVersionArn"]
        clock.advance(10_000)
        assert emulator.images() == {held: "PENDING"}
        assert emulator.release_builds() == 1
        clock.advance(0.4)
        assert emulator.images()[held] == "PENDING"
        clock.advance(0.7)
        assert emulator.images()[held] == "BUILDING"
        after = caller.create_image(**REQUEST, clientToken="after")["imageBuildVersionArn"]  # not held any more
        clock.advance(5)
        assert emulator.images() == {held: "AVAILABLE", after: "AVAILABLE"}


def test_cancelled_held_build_stays_cancelled_on_release():
    clock = ManualClock()
    with ImageBuilderEmulator(phase_seconds=1.0, clock=clock) as emulator:
        caller = client(emulator.endpoint_url)
        emulator.hold_builds()
        arn = caller.create_image(**REQUEST, clientToken="held")["imageBuildVersionArn"]
        caller.cancel_image_creation(imageBuildVersionArn=arn, clientToken="cancel")
        assert emulator.release_builds() == 0
        clock.advance(100)
        assert emulator.images() == {arn: "CANCELLED"}


def test_phase_ranges_give_each_build_its_own_duration_reproducibly():
    def durations(seed: int) -> list[float]:
        emulator = ImageBuilderEmulator(phase_seconds={"BUILDING": [10, 50], "TESTING": 0}, seed=seed)
        backend = emulator.backend
        arns = [backend.call("CreateImage", "us-east-1", {**REQUEST, "clientToken": f"t{i}"}) for i in range(20)]
        return [backend.build(arn["imageBuildVersionArn"]).phases[-1][2] for arn in arns]

    first = durations(seed=7)
    assert all(10 + 3 <= total <= 50 + 3 for total in first)  # PENDING+CREATING, DISTRIBUTING, INTEGRATING: 1 s each
    assert len(set(first)) == 20
    assert durations(seed=7) == first


@pytest.mark.parametrize(
    ("value", "message"),
    [([5, 1], "low <= high"), ([1, 2, 3], "neither a number"), ({"BUILDING": -1}, "must be >= 0")],
)
def test_phase_ranges_are_checked(value, message):
    with pytest.raises(ValueError, match=message):
        phase_durations(value)


def test_cli_parsers():
    assert parse_phase_seconds("5") == 5.0
    assert parse_phase_seconds("2-10") == [2.0, 10.0]
    assert parse_phase_seconds('{"BUILDING": [10, 50]}') == {"BUILDING": [10, 50]}
    assert parse_denied_key("AKIAX") == {"access_key_id": "AKIAX", "code": "AccessDeniedException"}
    assert parse_denied_key("AKIAX:ForbiddenException") == {"access_key_id": "AKIAX", "code": "ForbiddenException"}


def test_control_api_and_cli_drive_outages_keys_and_holds():
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_imagebuilder.testing",
            "--port",
            "0",
            "--phase-seconds",
            '{"PENDING": 0, "BUILDING": [0, 0.01], "TESTING": 0, "DISTRIBUTING": 0, "INTEGRATING": 0}',
            "--outage",
            "unavailable",
            "--deny-access-key",
            "AKIADENIED:ForbiddenException",
            "--hold-builds",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        endpoint = process.stdout.readline().rsplit(" ", 1)[1].strip()
        control = EmulatorControl(endpoint)
        caller, denied = client(endpoint), client(endpoint, "AKIADENIED")
        assert (
            error_of(lambda: caller.list_image_pipelines()).response["Error"]["Code"] == "ServiceUnavailableException"
        )
        control.end_outage()
        assert error_of(lambda: denied.list_image_pipelines()).response["Error"]["Code"] == "ForbiddenException"
        control.allow_access_key("AKIADENIED")
        arn = denied.create_image(**REQUEST, clientToken="cli")["imageBuildVersionArn"]
        assert control.images() == {arn: "PENDING"}  # held
        assert control.release_builds() == 1
        control.start_outage("drop")
        with pytest.raises((botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)):
            caller.get_image(imageBuildVersionArn=arn)
        control.end_outage()
        control.deny_access_key("AKIADENIED")
        assert error_of(lambda: denied.get_image(imageBuildVersionArn=arn)).response["Error"]["Code"] == (
            "AccessDeniedException"
        )
        control.hold_builds()
        assert control.release_builds() == 0
        deadline = time.monotonic() + 10  # its phases are milliseconds long, but a loaded machine is slow
        while control.images()[arn] != "AVAILABLE" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert caller.get_image(imageBuildVersionArn=arn)["image"]["state"]["status"] == "AVAILABLE"
        outcomes = [entry["outcome"] for entry in control.journal()]
        assert outcomes == [
            "ServiceUnavailableException",
            "ForbiddenException",
            "ok",
            "connection-dropped",
            "AccessDeniedException",
            "ok",
        ]
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
