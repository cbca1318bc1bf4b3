"""Workflow executions, step executions and image scan findings, through boto3 over HTTP against the emulator.

Each build runs the AWS managed workflows phase by phase; a planned failure names the workflow and step that
fail, and the image's ``state.reason`` and ``failureContext`` agree with them.  Planned scan findings belong to
one build and are listed only once it is AVAILABLE with image scanning enabled.  Every response is checked against
botocore's output shapes; the same controls work from Python, the control API and the command line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

import boto3
import botocore.config
import pytest

from airflow_imagebuilder.testing import EmulatorControl, ImageBuilderEmulator, ManualClock
from airflow_imagebuilder.testing.workflows import step_execution_id, workflow_execution_id
from tests.conftest import CONTAINER_RECIPE_ARN, IMAGE_RECIPE_ARN, INFRASTRUCTURE_ARN
from tests.shape_check import ResponseShapeRecorder

REQUEST = {"imageRecipeArn": IMAGE_RECIPE_ARN, "infrastructureConfigurationArn": INFRASTRUCTURE_ARN}
SCANNED = {"imageScanningConfiguration": {"imageScanningEnabled": True}}
BUILD_IMAGE_STEPS = [
    "LaunchBuildInstance",
    "ApplyBuildComponents",
    "InventoryCollection",
    "RunSanityTest",
    "CreateOutputAMI",
    "TerminateBuildInstance",
]
TEST_IMAGE_STEPS = ["LaunchTestInstance", "CollectImageScanFindings", "ApplyTestComponents", "TerminateTestInstance"]


@pytest.fixture
def recorder(imagebuilder_client):
    return ResponseShapeRecorder(imagebuilder_client)


def workflows(client, arn):
    return {run["type"]: run for run in client.list_workflow_executions(imageBuildVersionArn=arn)["workflowExecutions"]}


def steps(client, execution_id):
    return client.list_workflow_step_executions(workflowExecutionId=execution_id)["steps"]


def pages(call, key, **params):
    """Every page of a List call, following ``nextToken`` by hand."""
    collected = []
    while True:
        page = call(**params)
        collected.append(page[key])
        if "nextToken" not in page:
            return collected
        params["nextToken"] = page["nextToken"]


def findings(count, severity="MEDIUM"):
    return [{"severity": severity, "package_name": f"pkg-{index}", "package_version": "1.0"} for index in range(count)]


def test_workflows_follow_the_lifecycle(imagebuilder_emulator, imagebuilder_client, recorder):
    arn = imagebuilder_client.create_image(**REQUEST)["imageBuildVersionArn"]
    assert workflows(imagebuilder_client, arn) == {}  # PENDING: nothing runs yet
    seen = []
    for _ in range(6):
        imagebuilder_emulator.advance(30 if len(seen) < 2 else 60)
        seen.append({kind: run["status"] for kind, run in workflows(imagebuilder_client, arn).items()})
    assert seen == [
        {},
        {"BUILD": "RUNNING"},
        {"BUILD": "COMPLETED", "TEST": "RUNNING"},
        {"BUILD": "COMPLETED", "TEST": "COMPLETED", "DISTRIBUTION": "RUNNING"},
        {"BUILD": "COMPLETED", "TEST": "COMPLETED", "DISTRIBUTION": "COMPLETED"},
        {"BUILD": "COMPLETED", "TEST": "COMPLETED", "DISTRIBUTION": "COMPLETED"},
    ]
    runs = workflows(imagebuilder_client, arn)
    assert ":aws:workflow/build/build-image/" in runs["BUILD"]["workflowBuildVersionArn"]
    build_steps = steps(imagebuilder_client, runs["BUILD"]["workflowExecutionId"])
    assert [step["name"] for step in build_steps] == BUILD_IMAGE_STEPS
    assert {step["status"] for step in build_steps} == {"COMPLETED"}
    assert json.loads(build_steps[-2]["outputs"])["imageId"].startswith("ami-")
    test_steps = steps(imagebuilder_client, runs["TEST"]["workflowExecutionId"])
    assert [(step["name"], step["status"]) for step in test_steps] == [
        ("LaunchTestInstance", "COMPLETED"),
        ("CollectImageScanFindings", "SKIPPED"),  # scanning is not enabled on this image
        ("ApplyTestComponents", "COMPLETED"),
        ("TerminateTestInstance", "COMPLETED"),
    ]
    assert (runs["TEST"]["totalStepsSucceeded"], runs["TEST"]["totalStepsSkipped"]) == (3, 1)
    got = imagebuilder_client.get_workflow_execution(workflowExecutionId=runs["TEST"]["workflowExecutionId"])
    assert (got["imageBuildVersionArn"], got["type"], got["status"]) == (arn, "TEST", "COMPLETED")
    step = imagebuilder_client.get_workflow_step_execution(stepExecutionId=test_steps[2]["stepExecutionId"])
    assert (step["name"], step["action"], step["onFailure"], step["attemptNumber"]) == (
        "ApplyTestComponents",
        "ExecuteComponents",
        "Abort",
        1,
    )
    assert set(recorder.checked) >= {
        "ListWorkflowExecutions",
        "ListWorkflowStepExecutions",
        "GetWorkflowExecution",
        "GetWorkflowStepExecution",
    }
    assert recorder.violations == []


def test_steps_appear_as_the_workflow_reaches_them(imagebuilder_emulator, imagebuilder_client):
    arn = imagebuilder_client.create_image(**REQUEST)["imageBuildVersionArn"]
    imagebuilder_emulator.advance(60 + 25)  # 25 s into BUILDING: 6 steps of 10 s each
    run = workflows(imagebuilder_client, arn)["BUILD"]
    assert [(step["name"], step["status"]) for step in steps(imagebuilder_client, run["workflowExecutionId"])] == [
        ("LaunchBuildInstance", "COMPLETED"),
        ("ApplyBuildComponents", "COMPLETED"),
        ("InventoryCollection", "RUNNING"),
    ]
    assert (run["totalStepCount"], run["totalStepsSucceeded"], "endTime" in run) == (6, 2, False)


def test_tests_disabled_run_no_test_workflow_and_containers_run_container_workflows(
    imagebuilder_emulator, imagebuilder_client
):
    arn = imagebuilder_client.create_image(
        containerRecipeArn=CONTAINER_RECIPE_ARN,
        infrastructureConfigurationArn=INFRASTRUCTURE_ARN,
        imageTestsConfiguration={"imageTestsEnabled": False},
    )["imageBuildVersionArn"]
    imagebuilder_emulator.advance(600)
    runs = workflows(imagebuilder_client, arn)
    assert sorted(runs) == ["BUILD", "DISTRIBUTION"]
    assert ":workflow/build/build-container/" in runs["BUILD"]["workflowBuildVersionArn"]
    assert [step["name"] for step in steps(imagebuilder_client, runs["BUILD"]["workflowExecutionId"])] == [
        "LaunchBuildInstance",
        "BootstrapBuildInstance",
        "ApplyBuildComponents",
        "TerminateBuildInstance",
    ]


def test_a_planned_failure_names_the_failed_workflow_and_step(imagebuilder_emulator, imagebuilder_client, recorder):
    message = "Test component 'reboot-test' failed: the instance did not answer after reboot (exit 1)"
    imagebuilder_emulator.fail_next_builds("TESTING", step="ApplyTestComponents", step_message=message)
    arn = imagebuilder_client.create_image(**REQUEST)["imageBuildVersionArn"]
    imagebuilder_emulator.advance(600)
    listed = imagebuilder_client.list_workflow_executions(imageBuildVersionArn=arn)
    runs = {run["type"]: run for run in listed["workflowExecutions"]}
    assert {kind: run["status"] for kind, run in runs.items()} == {"BUILD": "COMPLETED", "TEST": "FAILED"}
    failed_run = runs["TEST"]
    assert "ApplyTestComponents" in failed_run["message"] and message in failed_run["message"]
    assert (failed_run["totalStepsSucceeded"], failed_run["totalStepsFailed"], failed_run["totalStepsSkipped"]) == (
        1,
        1,
        2,
    )
    test_steps = steps(imagebuilder_client, failed_run["workflowExecutionId"])
    failed = [step for step in test_steps if step["status"] == "FAILED"]
    assert [(step["name"], step["action"], step["message"], step["attemptNumber"]) for step in failed] == [
        ("ApplyTestComponents", "ExecuteComponents", message, 1)
    ]
    assert test_steps[0]["rollbackStatus"] == "COMPLETED"  # the test instance launched before the failure
    assert test_steps[-1]["status"] == "SKIPPED"
    state = imagebuilder_client.get_image(imageBuildVersionArn=arn)["image"]["state"]
    assert state["status"] == "FAILED"
    assert (
        state["reason"]
        == f"Workflow Execution ID: {failed_run['workflowExecutionId']} failed with reason: " + (failed_run["message"])
    )
    assert listed["message"] == state["reason"]
    assert state["failureContext"] == {
        "imageStatus": "TESTING",
        "workflowExecutionId": failed_run["workflowExecutionId"],
        "workflowArn": failed_run["workflowBuildVersionArn"],
        "stepExecutionId": failed[0]["stepExecutionId"],
        "failedStep": "ApplyTestComponents",
    }
    got = imagebuilder_client.get_workflow_step_execution(stepExecutionId=failed[0]["stepExecutionId"])
    assert (got["status"], got["message"], got["workflowExecutionId"]) == (
        "FAILED",
        message,
        failed_run["workflowExecutionId"],
    )
    assert recorder.violations == []


def test_failure_in_an_early_step_skips_the_rest_and_stops_the_lifecycle(imagebuilder_emulator, imagebuilder_client):
    imagebuilder_emulator.fail_next_builds(
        "BUILDING", step="LaunchBuildInstance", step_message="Insufficient capacity", workflow_message="No instance"
    )
    arn = imagebuilder_client.create_image(**REQUEST)["imageBuildVersionArn"]
    imagebuilder_emulator.advance(600)
    runs = workflows(imagebuilder_client, arn)
    assert list(runs) == ["BUILD"] and runs["BUILD"]["message"] == "No instance"
    statuses = [step["status"] for step in steps(imagebuilder_client, runs["BUILD"]["workflowExecutionId"])]
    assert statuses == ["FAILED"] + ["SKIPPED"] * 5
    reason = imagebuilder_client.get_image(imageBuildVersionArn=arn)["image"]["state"]["reason"]
    assert reason == f"Workflow Execution ID: {runs['BUILD']['workflowExecutionId']} failed with reason: No instance"


def test_a_verbatim_reason_stays_state_reason_and_becomes_the_step_message(imagebuilder_emulator, imagebuilder_client):
    imagebuilder_emulator.fail_next_builds("DISTRIBUTING", reason="Copy to eu-west-1 failed: KMS key not usable")
    arn = imagebuilder_client.create_image(**REQUEST)["imageBuildVersionArn"]
    imagebuilder_emulator.advance(600)
    state = imagebuilder_client.get_image(imageBuildVersionArn=arn)["image"]["state"]
    assert state["reason"] == "Copy to eu-west-1 failed: KMS key not usable"
    run = workflows(imagebuilder_client, arn)["DISTRIBUTION"]
    failed = [step for step in steps(imagebuilder_client, run["workflowExecutionId"]) if step["status"] == "FAILED"]
    assert [(step["name"], step["message"]) for step in failed] == [("DistributeImage", state["reason"])]
    assert state["failureContext"]["failedStep"] == "DistributeImage"
    assert state["failureContext"]["distributionFailure"] == {"errorMessage": state["reason"]}


def test_a_cancelled_build_cancels_its_running_workflow(imagebuilder_emulator, imagebuilder_client):
    arn = imagebuilder_client.create_image(**REQUEST)["imageBuildVersionArn"]
    imagebuilder_emulator.advance(60 + 15)
    imagebuilder_client.cancel_image_creation(imageBuildVersionArn=arn)
    imagebuilder_emulator.advance(600)
    runs = workflows(imagebuilder_client, arn)
    assert {kind: run["status"] for kind, run in runs.items()} == {"BUILD": "CANCELLED"}
    statuses = [step["status"] for step in steps(imagebuilder_client, runs["BUILD"]["workflowExecutionId"])]
    assert statuses == ["COMPLETED", "CANCELLED"] + ["SKIPPED"] * 4


def test_unknown_and_not_yet_started_workflows_are_not_found(imagebuilder_emulator, imagebuilder_client):
    arn = imagebuilder_client.create_image(**REQUEST)["imageBuildVersionArn"]
    imagebuilder_emulator.advance(60 + 5)
    build = workflows(imagebuilder_client, arn)["BUILD"]
    build_steps = steps(imagebuilder_client, build["workflowExecutionId"])
    not_started = workflow_execution_id(arn, "TEST")  # the test workflow has not started yet
    with pytest.raises(imagebuilder_client.exceptions.ResourceNotFoundException, match=not_started):
        imagebuilder_client.get_workflow_execution(workflowExecutionId=not_started)
    with pytest.raises(imagebuilder_client.exceptions.ResourceNotFoundException):
        imagebuilder_client.list_workflow_step_executions(workflowExecutionId=not_started)
    pending_step = step_execution_id(build["workflowExecutionId"], "CreateOutputAMI")
    with pytest.raises(imagebuilder_client.exceptions.ResourceNotFoundException):
        imagebuilder_client.get_workflow_step_execution(stepExecutionId=pending_step)
    assert [step["name"] for step in build_steps] == ["LaunchBuildInstance"]
    missing = "wf-00000000-0000-0000-0000-000000000000"
    with pytest.raises(imagebuilder_client.exceptions.ResourceNotFoundException):
        imagebuilder_client.get_workflow_execution(workflowExecutionId=missing)
    with pytest.raises(imagebuilder_client.exceptions.ResourceNotFoundException):
        imagebuilder_client.list_workflow_executions(
            imageBuildVersionArn="arn:aws:imagebuilder:us-east-1:123456789012:image/none/1.0.0/1"
        )
    with pytest.raises(imagebuilder_client.exceptions.InvalidParameterValueException, match="pattern"):
        imagebuilder_client.get_workflow_execution(workflowExecutionId="wf-not-an-id")
    # another region does not see this build's workflows
    other = boto3.client(
        "imagebuilder",
        endpoint_url=imagebuilder_emulator.endpoint_url,
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with pytest.raises(other.exceptions.ResourceNotFoundException):
        other.get_workflow_execution(workflowExecutionId=build["workflowExecutionId"])


def test_workflow_lists_paginate_over_three_pages(imagebuilder_emulator, imagebuilder_client):
    arn = imagebuilder_client.create_image(**REQUEST)["imageBuildVersionArn"]
    imagebuilder_emulator.advance(600)
    runs = pages(
        imagebuilder_client.list_workflow_executions, "workflowExecutions", imageBuildVersionArn=arn, maxResults=1
    )
    assert [[run["type"] for run in page] for page in runs] == [["BUILD"], ["TEST"], ["DISTRIBUTION"]]
    build_id = runs[0][0]["workflowExecutionId"]
    step_pages = pages(
        imagebuilder_client.list_workflow_step_executions, "steps", workflowExecutionId=build_id, maxResults=2
    )
    assert [[step["name"] for step in page] for page in step_pages] == [
        BUILD_IMAGE_STEPS[0:2],
        BUILD_IMAGE_STEPS[2:4],
        BUILD_IMAGE_STEPS[4:6],
    ]
    paginator = imagebuilder_client.get_paginator("list_workflow_step_executions")
    names = [step["name"] for page in paginator.paginate(workflowExecutionId=build_id) for step in page["steps"]]
    assert names == BUILD_IMAGE_STEPS
    token = imagebuilder_client.list_workflow_step_executions(workflowExecutionId=build_id, maxResults=2)["nextToken"]
    other_id = runs[1][0]["workflowExecutionId"]
    with pytest.raises(imagebuilder_client.exceptions.InvalidPaginationTokenException):
        imagebuilder_client.list_workflow_step_executions(workflowExecutionId=other_id, nextToken=token)
    with pytest.raises(imagebuilder_client.exceptions.InvalidPaginationTokenException):
        imagebuilder_client.list_workflow_executions(imageBuildVersionArn=arn, nextToken="not-a-token")
    with pytest.raises(imagebuilder_client.exceptions.InvalidParameterValueException):
        imagebuilder_client.list_workflow_executions(imageBuildVersionArn=arn, maxResults=26)


def test_scan_findings_belong_to_their_build_and_paginate(imagebuilder_emulator, imagebuilder_client, recorder):
    imagebuilder_emulator.plan_scan_findings(findings(55) + findings(1, "CRITICAL"))
    many = imagebuilder_client.create_image(**REQUEST, **SCANNED)["imageBuildVersionArn"]
    imagebuilder_emulator.plan_scan_findings(
        [
            {
                "severity": "HIGH",
                "title": "CVE-2023-0286 - openssl",
                "vulnerability_id": "CVE-2023-0286",
                "package_name": "openssl",
                "package_version": "3.0.7-1.amzn2023",
                "fixed_in_version": "3.0.8-1.amzn2023",
            }
        ]
    )
    one = imagebuilder_client.create_image(**REQUEST, **SCANNED)["imageBuildVersionArn"]
    imagebuilder_emulator.plan_scan_findings(findings(3, "CRITICAL"))
    unscanned = imagebuilder_client.create_image(**REQUEST)["imageBuildVersionArn"]
    imagebuilder_emulator.advance(240)  # all three are TESTING: no findings yet
    assert imagebuilder_client.list_image_scan_findings()["findings"] == []
    imagebuilder_emulator.advance(240)

    def by_build(arn, **params):
        return pages(
            imagebuilder_client.list_image_scan_findings,
            "findings",
            filters=[{"name": "imageBuildVersionArn", "values": [arn]}],
            **params,
        )

    many_pages = by_build(many)
    assert [len(page) for page in many_pages] == [25, 25, 6]
    assert {finding["imageBuildVersionArn"] for page in many_pages for finding in page} == {many}
    assert many_pages[-1][-1]["severity"] == "CRITICAL"
    (only,) = by_build(one)[0]
    assert (only["severity"], only["title"], only["fixAvailable"], only["type"]) == (
        "HIGH",
        "CVE-2023-0286 - openssl",
        "YES",
        "PACKAGE_VULNERABILITY",
    )
    package = only["packageVulnerabilityDetails"]["vulnerablePackages"][0]
    assert (package["name"], package["version"], package["fixedInVersion"]) == (
        "openssl",
        "3.0.7-1.amzn2023",
        "3.0.8-1.amzn2023",
    )
    assert only["packageVulnerabilityDetails"]["vulnerabilityId"] == "CVE-2023-0286"
    assert by_build(unscanned) == [[]]  # scanning not enabled: Inspector reported nothing
    assert len([f for page in pages(imagebuilder_client.list_image_scan_findings, "findings") for f in page]) == 57
    critical = imagebuilder_client.list_image_scan_findings(filters=[{"name": "severity", "values": ["CRITICAL"]}])
    assert [finding["imageBuildVersionArn"] for finding in critical["findings"]] == [many]
    token = imagebuilder_client.list_image_scan_findings(maxResults=25)["nextToken"]
    with pytest.raises(imagebuilder_client.exceptions.InvalidPaginationTokenException):
        imagebuilder_client.list_image_scan_findings(
            filters=[{"name": "imageBuildVersionArn", "values": [many]}], nextToken=token
        )
    with pytest.raises(imagebuilder_client.exceptions.InvalidRequestException, match="imageBuildVersionArn"):
        imagebuilder_client.list_image_scan_findings(filters=[{"name": "packageName", "values": ["openssl"]}])
    with pytest.raises(imagebuilder_client.exceptions.InvalidParameterValueException):
        imagebuilder_client.list_image_scan_findings(
            filters=[{"name": "severity", "values": ["HIGH"]}, {"name": "severity", "values": ["LOW"]}]
        )
    assert "ListImageScanFindings" in recorder.checked and recorder.violations == []


def test_image_scanning_shows_in_the_image_and_the_scan_step(imagebuilder_emulator, imagebuilder_client):
    plain = imagebuilder_client.create_image(**REQUEST)["imageBuildVersionArn"]
    scanned = imagebuilder_client.create_image(**REQUEST, **SCANNED)["imageBuildVersionArn"]
    container = imagebuilder_client.create_image(
        containerRecipeArn=CONTAINER_RECIPE_ARN, infrastructureConfigurationArn=INFRASTRUCTURE_ARN, **SCANNED
    )["imageBuildVersionArn"]

    def scanning(arn):
        return imagebuilder_client.get_image(imageBuildVersionArn=arn)["image"]["imageScanningConfiguration"]

    assert scanning(plain) == {"imageScanningEnabled": False}
    assert scanning(scanned) == {"imageScanningEnabled": True}
    assert scanning(container) == {
        "imageScanningEnabled": True,
        "ecrConfiguration": {"repositoryName": "image-builder-image-scanning-repository"},
    }
    imagebuilder_emulator.advance(240)
    run = workflows(imagebuilder_client, scanned)["TEST"]
    collected = [step for step in steps(imagebuilder_client, run["workflowExecutionId"])][1]
    assert (collected["name"], collected["status"]) == ("CollectImageScanFindings", "COMPLETED")


def test_pipeline_scanning_reaches_its_images_and_findings(imagebuilder_emulator, imagebuilder_client):
    pipeline = imagebuilder_client.create_image_pipeline(name="Golden", **REQUEST, **SCANNED)["imagePipelineArn"]
    imagebuilder_emulator.plan_scan_findings(findings(2, "LOW"))
    arn = imagebuilder_client.start_image_pipeline_execution(imagePipelineArn=pipeline)["imageBuildVersionArn"]
    image = imagebuilder_client.get_image(imageBuildVersionArn=arn)["image"]
    assert image["imageScanningConfiguration"] == {"imageScanningEnabled": True}
    imagebuilder_emulator.advance(600)
    listed = imagebuilder_client.list_image_scan_findings(filters=[{"name": "imagePipelineArn", "values": [pipeline]}])
    assert [(finding["imageBuildVersionArn"], finding["severity"]) for finding in listed["findings"]] == [
        (arn, "LOW"),
        (arn, "LOW"),
    ]


def test_set_scan_findings_replaces_a_builds_findings(imagebuilder_emulator, imagebuilder_client):
    arn = imagebuilder_client.create_image(**REQUEST, **SCANNED)["imageBuildVersionArn"]
    imagebuilder_emulator.set_scan_findings(arn, findings(1, "CRITICAL"))
    imagebuilder_emulator.advance(600)
    assert [finding["severity"] for finding in imagebuilder_client.list_image_scan_findings()["findings"]] == [
        "CRITICAL"
    ]


def test_controls_refuse_what_cannot_happen(imagebuilder_emulator):
    with pytest.raises(ValueError, match="runs no workflow"):
        imagebuilder_emulator.fail_next_builds("INTEGRATING", step="ApplyBuildComponents")
    with pytest.raises(ValueError, match="LaunchTestInstance"):
        imagebuilder_emulator.fail_next_builds("TESTING", step="ApplyBuildComponents")
    with pytest.raises(ValueError, match="500"):
        imagebuilder_emulator.fail_next_builds("TESTING", step_message="x" * 501)
    with pytest.raises(ValueError, match="severity 'SEVERE'"):
        imagebuilder_emulator.plan_scan_findings([{"severity": "SEVERE"}])
    with pytest.raises(ValueError, match="unknown keys"):
        imagebuilder_emulator.plan_scan_findings([{"severity": "LOW", "cve": "CVE-1"}])
    with pytest.raises(ValueError, match="fix_available"):
        imagebuilder_emulator.plan_scan_findings([{"severity": "LOW", "fix_available": "MAYBE"}])


def test_faults_and_the_journal_cover_the_new_operations(imagebuilder_emulator, imagebuilder_client):
    arn = imagebuilder_client.create_image(**REQUEST)["imageBuildVersionArn"]
    imagebuilder_emulator.advance(600)
    imagebuilder_emulator.add_fault("ListWorkflowExecutions", code="AccessDeniedException", count=1)
    imagebuilder_emulator.add_fault("ListImageScanFindings", code="ForbiddenException", count=1)
    with pytest.raises(imagebuilder_client.exceptions.ClientError) as denied:
        imagebuilder_client.list_workflow_executions(imageBuildVersionArn=arn)
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(imagebuilder_client.exceptions.ForbiddenException):
        imagebuilder_client.list_image_scan_findings()
    run = workflows(imagebuilder_client, arn)["BUILD"]
    steps(imagebuilder_client, run["workflowExecutionId"])
    journal = [
        (entry.operation, entry.outcome)
        for entry in imagebuilder_emulator.journal()
        if entry.operation.startswith(("ListWorkflow", "ListImageScan"))
    ]
    assert journal == [
        ("ListWorkflowExecutions", "AccessDeniedException"),
        ("ListImageScanFindings", "ForbiddenException"),
        ("ListWorkflowExecutions", "ok"),
        ("ListWorkflowStepExecutions", "ok"),
    ]


def _failing_and_scanned_build(client, advance):
    arn = client.create_image(**REQUEST, **SCANNED)["imageBuildVersionArn"]
    scanned = client.create_image(**REQUEST, **SCANNED)["imageBuildVersionArn"]
    advance()
    run = {r["type"]: r for r in client.list_workflow_executions(imageBuildVersionArn=arn)["workflowExecutions"]}
    failed = [s for s in steps(client, run["TEST"]["workflowExecutionId"]) if s["status"] == "FAILED"]
    severities = [f["severity"] for f in client.list_image_scan_findings()["findings"]]
    return (
        {kind: r["status"] for kind, r in run.items()},
        [(s["name"], s["message"]) for s in failed],
        client.get_image(imageBuildVersionArn=arn)["image"]["state"]["reason"].split(": ", 1)[0],
        [client.get_image(imageBuildVersionArn=scanned)["image"]["state"]["status"], severities],
    )


FAILURE = {"phase": "TESTING", "step": "ApplyTestComponents", "step_message": "reboot test failed"}
PLANNED_FINDINGS = {"findings": [{"severity": "HIGH", "package_name": "openssl"}], "count": 1}
EXPECTED = (
    {"BUILD": "COMPLETED", "TEST": "FAILED"},
    [("ApplyTestComponents", "reboot test failed")],
    "Workflow Execution ID",
    ["AVAILABLE", ["HIGH"]],
)


def test_control_api_sets_the_same_failures_and_findings():
    with ImageBuilderEmulator(phase_seconds=60, clock=ManualClock(), validate_responses=True) as emulator:
        control = EmulatorControl(emulator.endpoint_url)
        control.fail_next_builds(**FAILURE)
        control.plan_scan_findings(PLANNED_FINDINGS["findings"], count=2)  # the failing build consumes one
        client = _client(emulator.endpoint_url)
        assert _failing_and_scanned_build(client, lambda: control.advance(600)) == EXPECTED
        control.set_scan_findings(client.list_image_scan_findings()["findings"][0]["imageBuildVersionArn"], [])
        assert client.list_image_scan_findings()["findings"] == []
        request = urllib.request.Request(
            f"{emulator.endpoint_url}/_emulator/scan-findings",
            data=json.dumps({"findings": [{"severity": "BAD"}]}).encode(),
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 400 and "BAD" in refused.value.read().decode()


def test_cli_sets_the_same_failures_and_findings(tmp_path):
    findings_file = tmp_path / "findings.json"
    findings_file.write_text(json.dumps(PLANNED_FINDINGS | {"count": 2}))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_imagebuilder.testing",
            "--port",
            "0",
            "--phase-seconds",
            "0",
            "--plan-failure",
            json.dumps(FAILURE),
            "--scan-findings",
            f"@{findings_file}",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        endpoint = process.stdout.readline().rsplit(" ", 1)[1].strip()
        client = _client(endpoint)
        assert _failing_and_scanned_build(client, lambda: None) == EXPECTED
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_cli_refuses_a_bad_planned_failure():
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "airflow_imagebuilder.testing",
            "--plan-failure",
            '{"phase": "TESTING", "step": "Nope"}',
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "Nope" in refused.stderr


def _client(endpoint):
    return boto3.client(
        "imagebuilder",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=botocore.config.Config(retries={"total_max_attempts": 1}),
    )
