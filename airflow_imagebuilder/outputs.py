"""XCom outputs of an AVAILABLE image, pushed the same way by the operators and the sensor."""

from __future__ import annotations

from typing import Any


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
