"""Planned image scan findings: what a test says a build's scan found, and the ``ImageScanFinding`` it becomes.

A planned finding is a plain mapping (the same in the Python API, the control API and the command line)::

    {"severity": "CRITICAL", "package_name": "openssl", "package_version": "3.0.7-1.amzn2023",
     "fixed_in_version": "3.0.8-1.amzn2023", "title": "CVE-2023-0286 - openssl"}

Only ``severity`` is required.  ListImageScanFindings returns a build's findings only once the build is AVAILABLE
and only when image scanning is enabled on it, as Amazon Inspector reports them to the service.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from airflow_imagebuilder._decisions.diagnostics import SEVERITY_RANK

#: Amazon Inspector's severities, the provider's (its scan-findings gate ranks them).
SEVERITIES: tuple[str, ...] = tuple(SEVERITY_RANK)
#: Values of ``fixAvailable``.
FIX_AVAILABLE: tuple[str, ...] = ("YES", "NO", "PARTIAL")
#: Keys a planned finding may have; every one but ``severity`` is optional.
FINDING_KEYS: tuple[str, ...] = (
    "severity",
    "title",
    "description",
    "vulnerability_id",
    "package_name",
    "package_version",
    "fixed_in_version",
    "fix_available",
    "package_manager",
    "score",
)
_DEFAULT_SCORES = {"INFORMATIONAL": 0.0, "LOW": 3.1, "MEDIUM": 5.5, "HIGH": 7.5, "CRITICAL": 9.8}
_VECTOR = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"


def planned_finding(spec: Mapping[str, Any], index: int = 0) -> dict[str, Any]:
    """Check one planned finding and fill in its defaults; ``index`` numbers the default vulnerability id.

    :raises ValueError: naming the key and the rule it breaks.
    """
    if not isinstance(spec, Mapping):
        raise ValueError(f"scan finding {index}: expected a mapping of {', '.join(FINDING_KEYS)}, got {spec!r}")
    unknown = sorted(set(spec) - set(FINDING_KEYS))
    if unknown:
        raise ValueError(f"scan finding {index}: unknown keys {unknown}; keys are {', '.join(FINDING_KEYS)}")
    severity = spec.get("severity")
    if severity not in SEVERITIES:
        raise ValueError(f"scan finding {index}: severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    finding: dict[str, Any] = {key: value for key, value in spec.items() if value is not None}
    for key in FINDING_KEYS:
        if key != "score" and key in finding and (not isinstance(finding[key], str) or not finding[key]):
            raise ValueError(f"scan finding {index}: {key} must be a non-empty string, got {finding[key]!r}")
    finding.setdefault("vulnerability_id", f"CVE-2024-{10000 + index}")
    finding.setdefault("package_name", "glibc")
    finding.setdefault("package_version", "2.34-52.amzn2023.0.8")
    finding.setdefault("package_manager", "OS")
    finding.setdefault("fix_available", "YES" if "fixed_in_version" in finding else "NO")
    if finding["fix_available"] not in FIX_AVAILABLE:
        raise ValueError(
            f"scan finding {index}: fix_available {finding['fix_available']!r} is not one of {', '.join(FIX_AVAILABLE)}"
        )
    finding.setdefault("fixed_in_version", "NotAvailable")
    finding.setdefault("title", f"{finding['vulnerability_id']} - {finding['package_name']}")
    finding.setdefault(
        "description",
        f"{finding['package_name']} {finding['package_version']} is affected by {finding['vulnerability_id']}.",
    )
    if "score" in finding:
        score = finding["score"]
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 <= score <= 10:
            raise ValueError(f"scan finding {index}: score must be a number from 0 to 10, got {score!r}")
        finding["score"] = float(score)
    elif severity in _DEFAULT_SCORES:
        finding["score"] = _DEFAULT_SCORES[severity]
    return finding


def planned_findings(specs: Any) -> list[dict[str, Any]]:
    """Check a list of planned findings (see :func:`planned_finding`)."""
    if not isinstance(specs, (list, tuple)):
        raise ValueError(f"scan findings: expected a list of findings, got {type(specs).__name__}")
    return [planned_finding(spec, index) for index, spec in enumerate(specs)]


def image_scan_finding(
    finding: Mapping[str, Any],
    *,
    account_id: str,
    image_arn: str,
    pipeline_arn: str | None,
    observed: dt.datetime,
) -> dict[str, Any]:
    """The ``ImageScanFinding`` structure of ListImageScanFindings for one planned finding of a build."""
    vulnerability = finding["vulnerability_id"]
    package: dict[str, Any] = {
        "name": finding["package_name"],
        "version": finding["package_version"],
        "arch": "X86_64",
        "packageManager": finding["package_manager"],
        "fixedInVersion": finding["fixed_in_version"],
    }
    if finding["fix_available"] != "NO":
        package["remediation"] = f"Upgrade {finding['package_name']} to {finding['fixed_in_version']}"
    epoch = observed.timestamp()
    details: dict[str, Any] = {
        "vulnerabilityId": vulnerability,
        "vulnerablePackages": [package],
        "source": "NVD",
        "sourceUrl": f"https://nvd.nist.gov/vuln/detail/{vulnerability}",
        "vendorSeverity": finding["severity"].capitalize(),
        "referenceUrls": [f"https://nvd.nist.gov/vuln/detail/{vulnerability}"],
    }
    described: dict[str, Any] = {
        "awsAccountId": account_id,
        "imageBuildVersionArn": image_arn,
        "type": "PACKAGE_VULNERABILITY",
        "description": finding["description"],
        "title": finding["title"],
        "remediation": {"recommendation": {"text": "None Provided"}},
        "severity": finding["severity"],
        "firstObservedAt": epoch,
        "updatedAt": epoch,
        "packageVulnerabilityDetails": details,
        "fixAvailable": finding["fix_available"],
    }
    if pipeline_arn is not None:
        described["imagePipelineArn"] = pipeline_arn
    if "score" in finding:
        score = finding["score"]
        described["inspectorScore"] = score
        described["inspectorScoreDetails"] = {
            "adjustedCvss": {
                "scoreSource": "NVD",
                "cvssSource": "NVD",
                "version": "3.1",
                "score": score,
                "scoringVector": _VECTOR,
                "adjustments": [],
            }
        }
        details["cvss"] = [{"baseScore": score, "scoringVector": _VECTOR, "version": "3.1", "source": "NVD"}]
    return described
