"""Request handling the emulator shares with Image Builder, where it used to be kinder (or stricter) than AWS.

One test (or a few) per item of issue 24, each through boto3 or the AWS CLI over HTTP, each citing the model or
the AWS documentation it follows.  Every successful response is also checked against botocore's output shapes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
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
