"""What the operators and the sensor share once a build is known: the checks of their common arguments, the
deferred wait's trigger and its completion, and the XCom outputs of an AVAILABLE image."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_imagebuilder._decisions.diagnostics import check_gate_severity
from airflow_imagebuilder._decisions.retry import RetryPolicy
from airflow_imagebuilder.exceptions import ImageScanFindingsError
from airflow_imagebuilder.links import ImageBuilderAmiLink

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_imagebuilder.hooks import ImageBuilderHook
    from airflow_imagebuilder.triggers import ImageBuilderImageTrigger


def push_image_outputs(context: Any, image_build_version_arn: str, outputs: dict[str, Any], log: Any) -> None:
    """Push the outputs of an AVAILABLE image to XCom under their documented keys, and say what they are.

    Keys: ``amis`` (``[{"region", "image", "name", "accountId"}]``), ``ami_ids`` (``{region: ami id}``),
    ``container_image_uris_by_region`` and ``container_image_uris``; see
    :func:`~airflow_imagebuilder._decisions.waiting.image_outputs`.
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


class ImageWaitMixin:
    """Mixed into the operators and the sensor (after their Amazon provider base class): what they share."""

    task_id: str
    aws_conn_id: str | None
    region_name: str | None
    verify: bool | str | None
    botocore_config: dict[str, Any] | None
    api_retry: dict[str, Any] | None
    max_finding_severity: str | None
    completion_queue_url: str | None
    safety_poll_interval: float

    if TYPE_CHECKING:

        @property
        def hook(self) -> ImageBuilderHook: ...

    def _check_shared_arguments(self) -> None:
        """``api_retry`` and ``max_finding_severity`` are checked where the task is defined."""
        if self.api_retry is not None:
            try:
                RetryPolicy.from_value(self.api_retry)
            except (TypeError, ValueError) as error:
                raise ValueError(f"{self.task_id}: {error}") from None
        if self.max_finding_severity is not None:
            check_gate_severity(self.max_finding_severity, self.task_id)

    def _image_trigger(self, image_build_version_arn: str, **wait: Any) -> ImageBuilderImageTrigger:
        """The deferred wait for the image: this task's connection and event settings, and ``wait`` (waiter delay
        and attempts, cancel on kill, not-found grace)."""
        # Imported where a task defers, so that parsing a DAG does not load Airflow's trigger machinery (~10 ms).
        from airflow_imagebuilder.triggers import ImageBuilderImageTrigger

        return ImageBuilderImageTrigger(
            image_build_version_arn=image_build_version_arn,
            aws_conn_id=self.aws_conn_id,
            region_name=self.region_name,
            verify=self.verify,
            botocore_config=self.botocore_config,
            api_retry=self.api_retry,
            completion_queue_url=self.completion_queue_url,
            safety_poll_interval=self.safety_poll_interval,
            **wait,
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> str:
        """Resume after the trigger fired: the outputs of the AVAILABLE image, or the sync wait's exception."""
        from airflow_imagebuilder.triggers import resolve_event

        image_outputs = resolve_event(event, self.hook)
        arn = str(event["image_build_version_arn"])  # type: ignore[index]  # resolve_event checked it
        ImageBuilderAmiLink.record(context, self, arn, image_outputs.get("amis", []))
        finish_image(context, self.hook, arn, image_outputs, self.max_finding_severity)
        return arn
