"""Why a build failed and whether its image is safe to ship: the text and the decisions, without I/O.

The hook reads the workflow executions, their steps and the scan findings; this module turns what it read into
the lines of a failure message and the verdict of the scan-findings gate, so the sync, sensor and deferred paths
say the same thing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: Inspector severities, least to most severe.  UNTRIAGED (no severity assigned yet) ranks as HIGH: a gate
#: lets it through only when it allows HIGH findings.
SEVERITY_RANK: dict[str, int] = {"INFORMATIONAL": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3, "UNTRIAGED": 3, "CRITICAL": 4}
#: Values ``max_finding_severity`` takes.
GATE_SEVERITIES = ("INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL")
#: Findings named in a gate's failure message.
WORST_SHOWN = 5
#: Permissions that add the workflow details to a failure message.
DIAGNOSTIC_PERMISSIONS = "imagebuilder:ListWorkflowExecutions and imagebuilder:ListWorkflowStepExecutions"


def check_gate_severity(max_finding_severity: str | None, task_id: str) -> None:
    """Reject a ``max_finding_severity`` that is not one of :data:`GATE_SEVERITIES` (None: no gate)."""
    if max_finding_severity is not None and max_finding_severity not in GATE_SEVERITIES:
        raise ValueError(
            f"{task_id}: max_finding_severity={max_finding_severity!r} is not a severity; use one of "
            f"{', '.join(GATE_SEVERITIES)} (the most severe finding allowed), or None for no gate"
        )


def scanning_enabled(configuration: Mapping[str, Any] | None) -> bool:
    """True when an ``imageScanningConfiguration`` turns image scanning on."""
    return bool((configuration or {}).get("imageScanningEnabled"))


def scanning_required_message(task_id: str, max_finding_severity: str, where: str) -> str:
    return (
        f"{task_id}: max_finding_severity={max_finding_severity!r} gates on the image's scan findings, but image "
        f"scanning is not enabled in {where}; enable it (imageScanningConfiguration "
        "{'imageScanningEnabled': True}) or drop max_finding_severity"
    )


#: Statuses of a workflow execution that did not complete: its failed steps are worth naming.
ENDED_WORKFLOW_STATUSES = frozenset({"FAILED", "CANCELLED", "ROLLBACK_COMPLETED", "ROLLBACK_IN_PROGRESS"})
#: ``scanState.status`` values of a scan that may still complete.
SCAN_IN_PROGRESS = frozenset({"PENDING", "SCANNING", "COLLECTING"})


def scan_problem(image_build_version_arn: str, image: Mapping[str, Any]) -> tuple[str, bool] | None:
    """Why an AVAILABLE image's findings cannot be judged: (message, whether a retry may help); None if they can.

    Only a COMPLETED scan's findings count: an image whose scan failed, timed out or was abandoned has no
    findings to show, which must never read as "no findings".
    """
    if not scanning_enabled(image.get("imageScanningConfiguration")):
        return f"Image {image_build_version_arn} was built without image scanning, so it has no scan findings", False
    scan = image.get("scanState") or {}
    status = scan.get("status")
    if status == "COMPLETED":
        return None
    reason = f": {scan['reason']}" if scan.get("reason") else ""
    if status is None or status in SCAN_IN_PROGRESS:
        return f"The scan of image {image_build_version_arn} is not complete ({status or 'no scanState'}){reason}", True
    return f"The scan of image {image_build_version_arn} ended {status}{reason}; its findings are unknown", False


def workflow_lines(
    workflows: Sequence[Mapping[str, Any]], steps: Mapping[str, Sequence[Mapping[str, Any]]]
) -> list[str]:
    """One line per failed workflow (type, name, status, message) and one per failed step under it."""
    lines = []
    for workflow in workflows:
        if workflow.get("status") not in ENDED_WORKFLOW_STATUSES:
            continue
        name = str(workflow.get("workflowBuildVersionArn", "")).split(":workflow/")[-1]
        lines.append(
            f"Workflow {workflow.get('type', '?')} {name} ({workflow.get('workflowExecutionId')}) "
            f"{workflow.get('status')}: {workflow.get('message') or 'no message'}"
        )
        for step in steps.get(str(workflow.get("workflowExecutionId")), ()):
            if step.get("status") in ("FAILED", "CANCELLED"):
                lines.append(
                    f"  step {step.get('name')} (action {step.get('action', '?')}, attempt "
                    f"{step.get('attemptNumber', '?')}) {step.get('status')}: {step.get('message') or 'no message'}"
                )
    return lines


def log_line(log_group: str, log_stream: str | None) -> str:
    stream = f", log stream {log_stream}" if log_stream else ""
    return f"Build logs: CloudWatch log group {log_group}{stream}"


def severity_counts(findings: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Findings per severity (every severity present, zero when none)."""
    counts = Counter(str(finding.get("severity", "UNTRIAGED")) for finding in findings)
    return {severity: counts.get(severity, 0) for severity in (*GATE_SEVERITIES, "UNTRIAGED")} | dict(counts)


def findings_above(findings: Iterable[Mapping[str, Any]], max_finding_severity: str) -> list[Mapping[str, Any]]:
    """The findings more severe than allowed, worst first."""
    allowed = SEVERITY_RANK[max_finding_severity]
    above = [finding for finding in findings if _rank(finding) > allowed]
    return sorted(above, key=lambda finding: (-_rank(finding), -float(finding.get("inspectorScore") or 0)))


def _rank(finding: Mapping[str, Any]) -> int:
    return SEVERITY_RANK.get(str(finding.get("severity", "UNTRIAGED")), SEVERITY_RANK["UNTRIAGED"])


def describe_finding(finding: Mapping[str, Any]) -> str:
    """Severity, title, package and whether a fix is available, in one line."""
    details = finding.get("packageVulnerabilityDetails") or {}
    packages = ", ".join(
        f"{package.get('name')} {package.get('version', '')}".strip()
        + (f" (fixed in {package['fixedInVersion']})" if package.get("fixedInVersion") else "")
        for package in details.get("vulnerablePackages") or []
    )
    title = finding.get("title") or details.get("vulnerabilityId") or "untitled finding"
    return (
        f"{finding.get('severity', 'UNTRIAGED')} {title}"
        + (f" in {packages}" if packages else "")
        + f"; fix available: {finding.get('fixAvailable', 'unknown')}"
    )


def gate_message(
    image_build_version_arn: str,
    max_finding_severity: str,
    above: Sequence[Mapping[str, Any]],
    counts: Mapping[str, int],
) -> str:
    shown = "; ".join(describe_finding(finding) for finding in above[:WORST_SHOWN])
    more = f" (and {len(above) - WORST_SHOWN} more)" if len(above) > WORST_SHOWN else ""
    summary = ", ".join(f"{severity} {count}" for severity, count in counts.items() if count)
    return (
        f"Image {image_build_version_arn} has {len(above)} scan finding{'s' if len(above) != 1 else ''} above "
        f"max_finding_severity={max_finding_severity!r}: {shown}{more}. All findings: {summary}."
    )
