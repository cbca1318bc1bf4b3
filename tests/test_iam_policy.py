"""docs/iam-policy.json allows every AWS call the provider makes, and nothing in it is there for nothing.

The example DAGs and the operator, sensor, pipeline, diagnostics, scan-gate, cancel and event-driven flows run
against the emulator (Image Builder) and moto (SQS, EventBridge, SSM).  Every Image Builder call is read from the
emulator's journal, every other call from moto's request recorder.  Each call becomes the IAM actions the Service
Authorization Reference lists for its API operation (the action itself and its dependent actions), each on the
resource ARN the call names, and each must be allowed by the policy with IAM's wildcard matching.  The example
DAGs' own calls (``ssm:PutParameter``) are checked against docs/iam-policy-example-dags.json instead.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import fnmatch
import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_imagebuilder import exceptions, models
from airflow_imagebuilder.hooks import ImageBuilderHook
from airflow_imagebuilder.testing import ImageBuilderEmulator
from airflow_imagebuilder.testing.events import END_STATUSES, wire_events_to_queue
from airflow_imagebuilder.testing.examples import seed_example_resources
from airflow_imagebuilder.testing.processes import aws_connection_uri, local_client, moto_process
from airflow_imagebuilder.triggers import ImageBuilderImageEventTrigger
from tests.conftest import ACCOUNT, IMAGE_RECIPE_ARN, INFRASTRUCTURE_ARN, REGION, TESTS, load_dag, task_states
from tests.engine import ROOT

pytestmark = pytest.mark.usefixtures("airflow_db")

POLICY = ROOT / "docs" / "iam-policy.json"
EXAMPLE_POLICY = ROOT / "docs" / "iam-policy-example-dags.json"
#: The placeholders of the policy files, as the emulator and moto fill them.
PLACEHOLDERS = {"ACCOUNT_ID": ACCOUNT, "REGION": REGION}
#: The connection's access key: tells the provider's calls to moto from the emulator's own (its events).
ACCESS_KEY = "AKIAIAMPOLICYTEST"
EVENTS_QUEUE = "imagebuilder-events"
ROLLOUT_QUEUE = "imagebuilder-rollout-events"
SERVICE_LINKED_ROLE = (
    f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/imagebuilder.amazonaws.com/AWSServiceRoleForImageBuilder"
)
#: The IAM action of a non-Image Builder operation (the reference names the batch calls by the single action).
OTHER_ACTIONS = {
    "AmazonSQS.ReceiveMessage": "sqs:ReceiveMessage",
    "AmazonSQS.DeleteMessage": "sqs:DeleteMessage",
    "AmazonSQS.DeleteMessageBatch": "sqs:DeleteMessage",
    "AmazonSQS.ChangeMessageVisibility": "sqs:ChangeMessageVisibility",
    "AmazonSQS.ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "AmazonSQS.GetQueueAttributes": "sqs:GetQueueAttributes",
    "AWSEvents.ListRuleNamesByTarget": "events:ListRuleNamesByTarget",
    "AWSEvents.DescribeRule": "events:DescribeRule",
    "AmazonSSM.PutParameter": "ssm:PutParameter",
}
EXAMPLE_ACTIONS = {"ssm:PutParameter"}
#: Granted for calls the flows here do not make: a build from a container recipe, a visibility change (the
#: consumer returns an event it cannot act on yet).
OPTIONAL = {"imagebuilder:GetContainerRecipe", "sqs:ChangeMessageVisibility"}


@dataclass(frozen=True)
class Need:
    """One IAM action a call needs, on one resource, with the request context IAM conditions would see."""

    call: str
    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()


# ------------------------------------------------------------------------------------------ the checker
def wildcard(pattern: str, value: str) -> bool:
    """IAM's ``*`` (any run of characters, ``/`` and ``:`` included) and ``?`` (one character); case-sensitive."""
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def listed(statement: dict[str, Any], key: str) -> list[str]:
    value = statement[key]
    return [value] if isinstance(value, str) else list(value)


def conditions_hold(statement: dict[str, Any], context: dict[str, str]) -> bool:
    """StringEquals / StringLike on the keys the call supplies; a key the call lacks fails its condition."""
    for operator, keys in statement.get("Condition", {}).items():
        for key, wanted in keys.items():
            wanted = [wanted] if isinstance(wanted, str) else wanted
            value = context.get(key)
            if value is None:
                return False
            if operator == "StringEquals" and value not in wanted:
                return False
            if operator == "StringLike" and not any(wildcard(pattern, value) for pattern in wanted):
                return False
            if operator not in ("StringEquals", "StringLike"):
                raise AssertionError(f"the checker does not evaluate condition operator {operator}")
    return True


def allowed(policy: dict[str, Any], need: Need) -> bool:
    """Whether an Allow statement covers the action on the resource (the policies have no Deny)."""
    context = dict(need.context)
    for statement in policy["Statement"]:
        if statement["Effect"] != "Allow":
            continue
        actions = listed(statement, "Action")
        if not any(wildcard(pattern.lower(), need.action.lower()) for pattern in actions):
            continue
        resources = listed(statement, "Resource")
        if any(wildcard(pattern, need.resource) for pattern in resources) and conditions_hold(statement, context):
            return True
    return False


def denied(policy: dict[str, Any], needs: list[Need]) -> list[str]:
    return [
        f"{need.call} needs {need.action} on {need.resource}" + (f" with {dict(need.context)}" if need.context else "")
        for need in needs
        if not allowed(policy, need)
    ]


def load_policy(path: Any) -> dict[str, Any]:
    text = path.read_text()
    for placeholder, value in PLACEHOLDERS.items():
        text = text.replace(placeholder, value)
    return json.loads(text)


def without(policy: dict[str, Any], action: str) -> dict[str, Any]:
    """The policy with ``action`` taken out of every statement (a statement left with no action goes)."""
    statements = []
    for statement in policy["Statement"]:
        actions = [name for name in listed(statement, "Action") if name != action]
        if actions:
            statements.append({**statement, "Action": actions})
    return {**policy, "Statement": statements}


# ------------------------------------------------------------------- what each call needs, per the reference
def arn(resource: str) -> str:
    return f"arn:aws:imagebuilder:{REGION}:{ACCOUNT}:{resource}"


def imagebuilder_needs(operation: str, request: dict[str, Any], image_arn: str | None, emulator: Any) -> list[Need]:
    """The actions of one Image Builder call: ``imagebuilder:<operation>`` and the reference's dependent actions."""
    call = f"imagebuilder {operation}"
    own = {
        "CreateImage": image_arn,
        "GetImage": request.get("imageBuildVersionArn"),
        "CancelImageCreation": request.get("imageBuildVersionArn"),
        "ListWorkflowExecutions": request.get("imageBuildVersionArn"),
        "ListWorkflowStepExecutions": arn(f"workflow-execution/{request.get('workflowExecutionId')}"),
        "GetImagePipeline": request.get("imagePipelineArn"),
        "StartImagePipelineExecution": request.get("imagePipelineArn"),
        "ListImageScanFindings": "*",  # no resource type: the reference says "*"
    }
    if operation not in own:
        raise AssertionError(f"{call}: the provider made a call this test does not know the IAM actions of")
    needs = [Need(call, f"imagebuilder:{operation}", own[operation])]
    service_linked = Need(
        call,
        "iam:CreateServiceLinkedRole",
        SERVICE_LINKED_ROLE,
        (("iam:AWSServiceName", "imagebuilder.amazonaws.com"),),
    )
    if operation == "CreateImage":
        needs.append(service_linked)
        if "imageRecipeArn" in request:
            needs.append(Need(call, "imagebuilder:GetImageRecipe", request["imageRecipeArn"]))
        if "containerRecipeArn" in request:
            needs.append(Need(call, "imagebuilder:GetContainerRecipe", request["containerRecipeArn"]))
        infrastructure = request["infrastructureConfigurationArn"]
        needs.append(Need(call, "imagebuilder:GetInfrastructureConfiguration", infrastructure))
        if "distributionConfigurationArn" in request:
            needs.append(
                Need(call, "imagebuilder:GetDistributionConfiguration", request["distributionConfigurationArn"])
            )
        for workflow in request.get("workflows", []):
            needs.append(Need(call, "imagebuilder:GetWorkflow", workflow["workflowArn"]))
        if request.get("tags"):
            needs.append(Need(call, "imagebuilder:TagResource", image_arn))
        if request.get("imageScanningConfiguration", {}).get("imageScanningEnabled"):
            needs.append(Need(call, "inspector2:BatchGetAccountStatus", "*"))
        # The build instance runs with the instance profile's role (named like the profile, as AWS's default
        # EC2InstanceProfileForImageBuilder is); an execution role is passed to Image Builder itself.
        profile = emulator.state.resources[infrastructure].request["instanceProfileName"]
        needs.append(
            Need(
                call,
                "iam:PassRole",
                f"arn:aws:iam::{ACCOUNT}:role/{profile}",
                (("iam:PassedToService", "ec2.amazonaws.com"),),
            )
        )
        if "executionRole" in request:
            role = request["executionRole"]
            role_arn = role if role.startswith("arn:") else f"arn:aws:iam::{ACCOUNT}:role/{role}"
            needs.append(Need(call, "iam:PassRole", role_arn, (("iam:PassedToService", "imagebuilder.amazonaws.com"),)))
    if operation == "StartImagePipelineExecution":
        needs.append(service_linked)
        needs.append(Need(call, "imagebuilder:GetImagePipeline", request["imagePipelineArn"]))
    if operation == "ListImageScanFindings":
        needs.append(Need(call, "inspector2:ListFindings", "*"))
    return needs


def recorded_needs(recording: str) -> list[Need]:
    """The actions of the calls moto received with the connection's access key (the provider's and the DAGs')."""
    needs = []
    for line in recording.splitlines():
        entry = json.loads(line)
        headers = {name.lower(): value for name, value in entry["headers"].items()}
        if f"Credential={ACCESS_KEY}/" not in headers.get("authorization", ""):
            continue  # the emulator's own events, the test's set-up
        target = headers["x-amz-target"]
        body = json.loads(base64.b64decode(entry["body"]) if entry["body_encoded"] else entry["body"])
        region = re.search(r"Credential=[^/]+/\d+/([^/]+)/", headers["authorization"])[1]
        action = OTHER_ACTIONS.get(target)
        call = f"{target.split('.')[0]} {target.split('.')[1]}"
        if action is None:
            raise AssertionError(f"{call}: a call this test does not know the IAM action of")
        if action.startswith("sqs:"):
            resource = f"arn:aws:sqs:{region}:{ACCOUNT}:{body['QueueUrl'].rsplit('/', 1)[1]}"
        elif action == "events:DescribeRule":
            resource = f"arn:aws:events:{region}:{ACCOUNT}:rule/{body['Name']}"
        elif action == "ssm:PutParameter":
            resource = f"arn:aws:ssm:{region}:{ACCOUNT}:parameter{body['Name']}"
        else:
            resource = "*"  # events:ListRuleNamesByTarget names a target, not a rule
        needs.append(Need(call, action, resource))
    return needs


# --------------------------------------------------------------------------------------------- the runs
def moto_api(moto: Any, path: str, method: str = "POST") -> str:
    with urllib.request.urlopen(urllib.request.Request(moto.endpoint_url + path, method=method)) as response:
        return response.read().decode()


def example_dag(dag_id: str) -> Any:
    """An example DAG of dags/ (load_dag joins an absolute path as that path)."""
    return load_dag(str(ROOT / "dags" / f"{dag_id}.py"), dag_id)


def run_dag(dag: Any, logical_date: dt.datetime) -> Any:
    return dag.test(logical_date=logical_date, run_after=logical_date)


def run_flows(emulator: Any, moto: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a deployment does with the policy's permissions, every flow the provider has."""
    queue_url = f"{moto.endpoint_url}/{ACCOUNT}/{EVENTS_QUEUE}"
    rollout_queue_url = f"{moto.endpoint_url}/{ACCOUNT}/{ROLLOUT_QUEUE}"
    monkeypatch.setenv("AIRFLOW_VAR_IMAGEBUILDER_EVENTS_QUEUE_URL", queue_url)
    # dag.test() syncs the DAG from its bundle: the example DAGs get one of their own beside tests/dags.
    bundles = [("dags-folder", TESTS / "dags"), ("example-dags", ROOT / "dags")]
    monkeypatch.setenv(
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
        json.dumps(
            [
                {
                    "name": name,
                    "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                    "kwargs": {"path": str(path)},
                }
                for name, path in bundles
            ]
        ),
    )
    # Operator (not waiting) + deferrable sensor, then the AMI ids published to SSM, as a user runs it.
    emulator.set_phase_seconds(0)
    golden = run_dag(example_dag("imagebuilder_golden_ami"), dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc))
    assert task_states(golden) == {"create_image": "success", "wait_for_image": "success", "publish_ami": "success"}
    weekly = run_dag(example_dag("imagebuilder_weekly_rebuild"), dt.datetime(2026, 12, 7, 4, tzinfo=dt.timezone.utc))
    assert task_states(weekly) == {"rebuild_image": "success"}
    # The pipeline's deferred wait on the events queue: the build must still be running when the trigger starts.
    emulator.set_phase_seconds(0.2)
    night = run_dag(example_dag("imagebuilder_pipeline_nightly"), dt.datetime(2026, 12, 2, 2, tzinfo=dt.timezone.utc))
    assert task_states(night) == {"run_pipeline": "success", "publish_ami": "success"}
    # The AssetWatcher of imagebuilder_rollout_on_event: the night's AVAILABLE event on its own queue.
    watcher = ImageBuilderImageEventTrigger(
        queue_url=rollout_queue_url, image_pipeline_arn=arn("image-pipeline/golden-nightly")
    )

    async def first_event() -> dict:
        async for event in watcher.run():
            return event.payload
        raise AssertionError("the event trigger fired nothing")

    assert asyncio.run(asyncio.wait_for(first_event(), 30))["status"] == "AVAILABLE"
    # Why a build failed (workflow and step executions), then the scan gate (findings over three pages).
    emulator.set_phase_seconds(0.01)
    monkeypatch.delenv("IB_MAX_SEVERITY", raising=False)
    emulator.fail_next_builds(phase="TESTING", step="ApplyTestComponents", step_message="reboot test failed")
    failed = run_dag(load_dag("diagnose.py", "ib_diagnose"), dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc))
    assert task_states(failed)["create"] == "failed"
    monkeypatch.setenv("IB_MAX_SEVERITY", "HIGH")
    emulator.plan_scan_findings([{"severity": "CRITICAL" if n == 30 else "LOW", "title": f"F{n}"} for n in range(60)])
    gated = run_dag(load_dag("diagnose.py", "ib_diagnose"), dt.datetime(2026, 5, 2, tzinfo=dt.timezone.utc))
    assert task_states(gated)["create"] == "failed"
    # A build with a managed workflow and an execution role, timing out and cancelled.
    emulator.hold_builds()
    hook = ImageBuilderHook(aws_conn_id="aws_default")
    request = {
        "imageRecipeArn": IMAGE_RECIPE_ARN,
        "infrastructureConfigurationArn": INFRASTRUCTURE_ARN,
        "workflows": [{"workflowArn": f"arn:aws:imagebuilder:{REGION}:aws:workflow/build/build-image/1.0.0/1"}],
        "executionRole": "ImageBuilderWorkflowExecutionRole",
        "clientToken": "iam-policy-cancel",
    }
    held = hook.create_image(models.validate_request(request))["imageBuildVersionArn"]
    with pytest.raises(exceptions.ImageBuildTimeoutError):
        hook.wait_for_image(held, waiter_delay=0.01, waiter_max_attempts=2)
    emulator.release_builds()
    # `airflow-imagebuilder-events check` on the queue, as a user runs it.
    command = [str(Path(sys.executable).with_name("airflow-imagebuilder-events")), "check", "--queue-url", queue_url]
    checked = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.fixture(scope="module")
def needs(airflow_db: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Need]]:
    """Every IAM action the flows needed, with the call and resource that needed it."""
    home = tmp_path_factory.mktemp("iam-policy")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("MOTO_RECORDER_FILEPATH", str(home / "moto-recording"))
        with (
            moto_process(log_dir=home) as moto,
            ImageBuilderEmulator(
                phase_seconds=0, validate_responses=True, events_endpoint_url=moto.endpoint_url
            ) as emulator,
        ):
            seed_example_resources(local_client("imagebuilder", emulator.endpoint_url))
            for queue in (EVENTS_QUEUE, ROLLOUT_QUEUE):
                wire_events_to_queue(
                    local_client("events", moto.endpoint_url),
                    local_client("sqs", moto.endpoint_url),
                    queue,
                    statuses=END_STATUSES,
                )
            seeded = len(emulator.journal())
            moto_api(moto, "/moto-api/recorder/reset-recording")
            moto_api(moto, "/moto-api/recorder/start-recording")
            monkeypatch.setenv(
                "AIRFLOW_CONN_AWS_DEFAULT",
                aws_connection_uri(emulator.endpoint_url, moto.endpoint_url, access_key_id=ACCESS_KEY),
            )
            run_flows(emulator, moto, monkeypatch)
            found = [
                need
                for entry in emulator.journal()[seeded:]
                for need in imagebuilder_needs(entry.operation, entry.request, entry.image_arn, emulator)
            ]
            found += recorded_needs(moto_api(moto, "/moto-api/recorder/download-recording", "GET"))
    yield found


# ------------------------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("path", [POLICY, EXAMPLE_POLICY], ids=lambda path: path.name)
def test_the_policy_files_are_well_formed_iam_policies(path):
    policy = json.loads(path.read_text())
    assert policy["Version"] == "2012-10-17"
    assert policy["Statement"], f"{path.name} has no statement"
    sids = [statement.get("Sid") for statement in policy["Statement"]]
    assert len(set(sids)) == len(sids), f"{path.name} repeats a Sid"
    for statement in policy["Statement"]:
        assert {"Effect", "Action", "Resource"} <= statement.keys(), statement
        assert statement["Effect"] == "Allow"
        for action in listed(statement, "Action"):
            assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z]+", action), f"{action} is not a full action name"
        for resource in listed(statement, "Resource"):
            assert resource == "*" or resource.startswith("arn:aws:"), resource


def test_the_provider_policy_leaves_the_example_dags_calls_out():
    actions = {action for statement in load_policy(POLICY)["Statement"] for action in listed(statement, "Action")}
    assert not actions & EXAMPLE_ACTIONS


@pytest.mark.slow  # the flows run the example DAGs
def test_the_policy_allows_every_call_the_flows_made(needs):
    provider = [need for need in needs if need.action not in EXAMPLE_ACTIONS]
    operations = {need.call for need in provider}
    # The flows reached every operation the provider calls, so the policy is checked against all of them.
    assert operations >= {
        "imagebuilder CreateImage",
        "imagebuilder GetImage",
        "imagebuilder CancelImageCreation",
        "imagebuilder GetImagePipeline",
        "imagebuilder StartImagePipelineExecution",
        "imagebuilder ListWorkflowExecutions",
        "imagebuilder ListWorkflowStepExecutions",
        "imagebuilder ListImageScanFindings",
        "AmazonSQS ReceiveMessage",
        "AmazonSQS DeleteMessageBatch",
        "AmazonSQS GetQueueAttributes",
        "AWSEvents ListRuleNamesByTarget",
        "AWSEvents DescribeRule",
    }, operations
    assert denied(load_policy(POLICY), provider) == []
    examples = [need for need in needs if need.action in EXAMPLE_ACTIONS]
    assert examples and denied(load_policy(EXAMPLE_POLICY), examples) == []


@pytest.mark.slow
def test_every_action_of_the_policy_was_needed(needs):
    needed = {need.action for need in needs}
    granted = {action for statement in load_policy(POLICY)["Statement"] for action in listed(statement, "Action")}
    assert granted - needed <= OPTIONAL, f"the policy grants {sorted(granted - needed - OPTIONAL)} no call needed"


#: Every action the shipped policy grants, each taken out in turn below.
GRANTED = sorted({action for statement in load_policy(POLICY)["Statement"] for action in listed(statement, "Action")})


@pytest.mark.slow
@pytest.mark.parametrize("action", GRANTED)
def test_taking_an_action_out_of_the_policy_is_caught(needs, action):
    calls = [need for need in needs if need.action == action]
    if not calls:
        assert action in OPTIONAL, f"no flow made a call needing {action}"
        return
    missing = denied(without(load_policy(POLICY), action), calls)
    assert missing, f"the checker still allowed {action} after it was taken out"
    assert all(f"needs {action} on " in line for line in missing)
