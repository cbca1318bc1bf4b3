"""Why a build failed, and the scan-findings gate: through Airflow and the hook against the emulator over HTTP."""

from __future__ import annotations

import asyncio
import datetime as dt
import re

import boto3
import pytest

from airflow_imagebuilder._decisions.diagnostics import findings_above, gate_message, severity_counts
from airflow_imagebuilder.exceptions import ImageBuildFailedError, ImageScanningNotEnabledError
from airflow_imagebuilder.hooks import ImageBuilderHook
from airflow_imagebuilder.operators import ImageBuilderCreateImageOperator
from airflow_imagebuilder.triggers import ImageBuilderImageTrigger, resolve_event
from tests.conftest import IMAGE_RECIPE_ARN, INFRASTRUCTURE_ARN, load_dag, task_states, xcom

pytestmark = pytest.mark.usefixtures("airflow_db")
FAST_RETRY = {"base_delay": 0.001, "max_delay": 0.01, "max_attempts": 4, "max_elapsed": 30}
FAILING_STEP = {"phase": "TESTING", "step": "ApplyTestComponents", "step_message": "reboot test failed: exit 1"}


def run(monkeypatch, **env: str):
    for name in ("IB_DEFERRABLE", "IB_MAX_SEVERITY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    date = dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc)
    return load_dag("diagnose.py", "ib_diagnose").test(logical_date=date, run_after=date)


def start_build(emulator, token: str) -> str:
    client = boto3.client("imagebuilder", endpoint_url=emulator.endpoint_url, region_name="us-east-1")
    return client.create_image(
        imageRecipeArn=IMAGE_RECIPE_ARN,
        infrastructureConfigurationArn=INFRASTRUCTURE_ARN,
        imageTestsConfiguration={"imageTestsEnabled": True},
        clientToken=token,
    )["imageBuildVersionArn"]


def failure_text(emulator, deferrable: bool) -> str:
    """The failure message of a build failing in a named test step, waited for in one mode."""
    emulator.fail_next_builds(**FAILING_STEP)
    arn = start_build(emulator, token=f"deferrable-{deferrable}")
    hook = ImageBuilderHook(aws_conn_id="aws_default", api_retry=FAST_RETRY)
    with pytest.raises(ImageBuildFailedError) as error:
        if deferrable:
            trigger = ImageBuilderImageTrigger(
                image_build_version_arn=arn, waiter_delay=0.05, aws_conn_id="aws_default", api_retry=FAST_RETRY
            )

            async def first_event():
                async for event in trigger.run():
                    return event.payload

            resolve_event(asyncio.run(first_event()), hook)  # in the worker, as execute_complete does
        else:
            hook.wait_for_image(arn, waiter_delay=0.05, waiter_max_attempts=400)
    text = re.sub(r"log stream 1\.0\.0/\d+$", "log stream 1.0.0/<build>", str(error.value).replace(arn, "<arn>"))
    return re.sub(r"\b(wf|step)-[0-9a-f-]{36}", r"\1-<id>", text)


def test_a_failed_step_is_named_with_its_workflow_reason_and_logs_the_same_in_sync_and_deferred(fast_emulator):
    sync, deferred = failure_text(fast_emulator, False), failure_text(fast_emulator, True)
    assert sync == deferred
    lines = sync.splitlines()
    assert lines[0].startswith("Image <arn> ended with status FAILED: Workflow Execution ID: wf-<id> failed")
    assert any(line.startswith("Workflow TEST") and "FAILED" in line for line in lines)
    assert any("step ApplyTestComponents" in line and "reboot test failed: exit 1" in line for line in lines)
    assert lines[-1].startswith("Build logs: CloudWatch log group /aws/imagebuilder/golden-base")


@pytest.mark.parametrize("deferrable", ["0", "1"])
def test_the_task_error_names_the_failed_step_in_both_modes(fast_emulator, monkeypatch, capfd, deferrable):
    fast_emulator.fail_next_builds(**FAILING_STEP)
    dag_run = run(monkeypatch, IB_DEFERRABLE=deferrable)
    assert task_states(dag_run)["create"] == "failed"
    output = capfd.readouterr().out
    assert "step ApplyTestComponents (action" in output and "reboot test failed: exit 1" in output
    assert "Build logs: CloudWatch log group /aws/imagebuilder/golden-base" in output


def test_without_permission_for_the_workflow_calls_the_base_message_gets_one_hint(fast_emulator):
    fast_emulator.add_fault("ListWorkflowExecutions", code="AccessDeniedException", status=403, message="denied")
    text = failure_text(fast_emulator, False)
    assert text.splitlines()[0].startswith("Image <arn> ended with status FAILED")
    assert "Allow imagebuilder:ListWorkflowExecutions and imagebuilder:ListWorkflowStepExecutions" in text
    assert "step ApplyTestComponents" not in text
    assert [entry.outcome for entry in fast_emulator.journal("ListWorkflowExecutions")] == ["AccessDeniedException"]


def finding(severity: str, index: int) -> dict:
    return {
        "severity": severity,
        "title": f"CVE-2026-{index:04d}",
        "package_name": f"pkg{index}",
        "fix_available": "YES",
    }


def test_the_gate_passes_medium_findings_under_high(fast_emulator, monkeypatch):
    fast_emulator.plan_scan_findings([finding("MEDIUM", index) for index in range(4)] + [finding("LOW", 9)])
    dag_run = run(monkeypatch, IB_MAX_SEVERITY="HIGH")
    assert task_states(dag_run) == {"create": "success", "wait": "success"}
    counts = xcom(dag_run, "create", "scan_findings_counts")
    assert counts["MEDIUM"] == 4 and counts["LOW"] == 1 and counts["CRITICAL"] == 0


@pytest.mark.parametrize("deferrable", ["0", "1"])
def test_the_gate_fails_on_one_critical_finding_over_three_pages(fast_emulator, monkeypatch, capfd, deferrable):
    findings = [finding("LOW", index) for index in range(59)]
    findings.insert(42, finding("CRITICAL", 4242))  # on the second of three pages of 25
    fast_emulator.plan_scan_findings(findings)
    dag_run = run(monkeypatch, IB_MAX_SEVERITY="HIGH", IB_DEFERRABLE=deferrable)
    states = task_states(dag_run)
    assert states["create"] == "failed" and states["wait"] != "success"
    [ti] = [ti for ti in dag_run.get_task_instances() if ti.task_id == "create"]
    assert ti.try_number == 1  # no Airflow retries for a gate
    assert len(fast_emulator.journal("ListImageScanFindings")) == 3
    assert xcom(dag_run, "create", "scan_findings_counts")["CRITICAL"] == 1
    output = capfd.readouterr().out
    assert "1 scan finding above max_finding_severity='HIGH': CRITICAL CVE-2026-4242 in pkg4242" in output


def test_a_gate_without_scanning_is_refused_before_any_call():
    with pytest.raises(ImageScanningNotEnabledError, match="image scanning is not enabled"):
        ImageBuilderCreateImageOperator(
            task_id="t",
            image_recipe_arn=IMAGE_RECIPE_ARN,
            infrastructure_configuration_arn=INFRASTRUCTURE_ARN,
            max_finding_severity="HIGH",
        )
    with pytest.raises(ValueError, match="max_finding_severity='SEVERE' is not a severity"):
        ImageBuilderCreateImageOperator(
            task_id="t",
            image_recipe_arn=IMAGE_RECIPE_ARN,
            infrastructure_configuration_arn=INFRASTRUCTURE_ARN,
            image_scanning_configuration={"imageScanningEnabled": True},
            max_finding_severity="SEVERE",
        )


def test_gate_decisions_rank_severities_and_name_the_worst_first():
    findings = [
        {"severity": "HIGH", "title": "h", "inspectorScore": 7.5},
        {"severity": "CRITICAL", "title": "c", "fixAvailable": "NO"},
        {"severity": "UNTRIAGED", "title": "u"},
        {"severity": "LOW", "title": "l"},
    ]
    assert [item["title"] for item in findings_above(findings, "MEDIUM")] == ["c", "h", "u"]
    assert [item["title"] for item in findings_above(findings, "HIGH")] == ["c"]
    assert findings_above(findings, "CRITICAL") == []
    counts = severity_counts(findings)
    assert counts["CRITICAL"] == counts["HIGH"] == counts["UNTRIAGED"] == counts["LOW"] == 1 and counts["MEDIUM"] == 0
    message = gate_message("arn", "HIGH", findings_above(findings, "HIGH"), counts)
    assert (
        "CRITICAL c; fix available: NO" in message
        and "All findings: LOW 1, HIGH 1, CRITICAL 1, UNTRIAGED 1." in message
    )
