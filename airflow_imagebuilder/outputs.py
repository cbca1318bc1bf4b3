"""XCom outputs of an AVAILABLE image, pushed the same way by the operators and the sensor."""

from __future__ import annotations

from typing import Any

from airflow_imagebuilder.exceptions import ImageScanFindingsError


def push_image_outputs(context: Any, image_build_version_arn: str, outputs: dict[str, Any], log: Any) -> None:
    """Push the outputs of an AVAILABLE image to XCom under their documented keys, and say what they are.

    Keys: ``amis`` (``[{"region", "image", "name", "accountId"}]``), ``ami_ids`` (``{region: ami id}``) and
    ``container_image_uris``; see :func:`~airflow_imagebuilder.waiting.image_outputs`.
    """
    for key, value in outputs.items():
        context["ti"].xcom_push(key=key, value=value)
    log.info(
        "Image %s is AVAILABLE: AMIs %s, container images %s",
        image_build_version_arn,
        outputs.get("ami_ids") or "none",
        outputs.get("container_image_uris") or "none",
    )


def finish_image(
    context: Any,
    hook: Any,
    image_build_version_arn: str,
    outputs: dict[str, Any],
    max_finding_severity: str | None,
    image: dict[str, Any] | None = None,
) -> None:
    """Gate an AVAILABLE image on its scan findings (when asked), then push its outputs.

    ``scan_findings_counts`` (findings per severity) is pushed whether the gate passes or fails.  ``image`` is the
    AVAILABLE image when the caller has it (else the gate reads it).
    """
    if max_finding_severity is not None:
        try:
            counts = hook.gate_scan_findings(image_build_version_arn, max_finding_severity, image)
        except ImageScanFindingsError as error:
            context["ti"].xcom_push(key="scan_findings_counts", value=error.counts)
            raise
        context["ti"].xcom_push(key="scan_findings_counts", value=counts)
    push_image_outputs(context, image_build_version_arn, outputs, hook.log)
