"""ImageBuilderImageSensor: wait for an image build version to become AVAILABLE."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.sensors.base_aws import AwsBaseSensor
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowSensorTimeout, PokeReturnValue, conf, timezone

from airflow_imagebuilder import exceptions
from airflow_imagebuilder._decisions import diagnostics, waiting
from airflow_imagebuilder._decisions.fields import IMAGE_BUILD_VERSION_ARN_PATTERN, PATTERN_RULES
from airflow_imagebuilder._decisions.states import DEFAULT_NOT_FOUND_GRACE, DEFAULT_SAFETY_POLL_INTERVAL
from airflow_imagebuilder._image_wait import ImageWaitMixin, finish_image
from airflow_imagebuilder.hooks import ImageBuilderHook
from airflow_imagebuilder.links import (
    ImageBuilderAmiLink,
    ImageBuilderImageLink,
    ImageBuilderLogsLink,
    record_build_links,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


__all__ = [
    "ImageBuilderImageSensor",
]


class ImageBuilderImageSensor(AwsBaseSensor[ImageBuilderHook], ImageWaitMixin):
    """
    Wait until an image build version is AVAILABLE; fail as soon as it reaches a failure state.

    Works in ``poke``, ``reschedule`` and deferrable mode; ``timeout`` means the same in all three.  Once
    AVAILABLE, pushes the same XCom keys as the operator (``amis``, ``ami_ids``, ``container_image_uris_by_region``,
    ``container_image_uris``) and returns the ARN.  The sensor only watches: it never cancels the build.  Each poke
    is decided by :func:`~airflow_imagebuilder._decisions.waiting.next_step`, as in the operator's wait and the
    trigger: an ARN the service does not know fails the task once ``not_found_grace`` has passed; an error waiting
    cannot mend (credentials, permissions, a bad parameter) fails it at the first answer.

    :param image_build_version_arn: the image build version ARN, e.g. ``create.output`` (templated).
    :param not_found_grace: seconds during which "not found" is taken for eventual consistency (default 120).
    :param max_finding_severity: the most severe image scan finding allowed; as for the operators (default None).
    :param completion_queue_url: an SQS queue of Image Builder's state change events for the deferrable wait
        (templated; default None: polling); see :class:`~airflow_imagebuilder.triggers.ImageBuilderImageTrigger`.
    :param safety_poll_interval: seconds between the safety GetImage calls of an event-driven wait (600).
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``).
    :param poke_interval: seconds between two status reads (default 60).
    :param api_retry: fields of :class:`~airflow_imagebuilder._decisions.retry.RetryPolicy` for throttled/5xx API calls.
    :param str aws_conn_id: the Airflow connection used for AWS credentials.
    :param str region_name: AWS region; defaults to the connection's.
    :param bool verify: whether or not to verify SSL certificates.
    :param dict botocore_config: configuration dictionary for the botocore client.
    """

    aws_hook_class = ImageBuilderHook
    template_fields: Sequence[str] = aws_template_fields("image_build_version_arn", "completion_queue_url")
    operator_extra_links = (ImageBuilderImageLink(), ImageBuilderLogsLink(), ImageBuilderAmiLink())
    ui_color = "#ff9900"

    def __init__(
        self,
        *,
        image_build_version_arn: str,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float = 60,
        api_retry: dict[str, Any] | None = None,
        not_found_grace: float = DEFAULT_NOT_FOUND_GRACE,
        max_finding_severity: str | None = None,
        completion_queue_url: str | None = None,
        safety_poll_interval: float = DEFAULT_SAFETY_POLL_INTERVAL,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.image_build_version_arn = image_build_version_arn
        self.deferrable = deferrable
        self.api_retry = api_retry
        self.not_found_grace = not_found_grace
        self.max_finding_severity = max_finding_severity
        self.completion_queue_url = completion_queue_url
        self.safety_poll_interval = safety_poll_interval
        self._check_shared_arguments()
        self._transitions: waiting.TransitionLog | None = None

    @property
    def _hook_parameters(self) -> dict[str, Any]:
        return {**super()._hook_parameters, "api_retry": self.api_retry}

    def _checked_arn(self) -> str:
        arn = self.image_build_version_arn
        if not isinstance(arn, str) or not re.match(IMAGE_BUILD_VERSION_ARN_PATTERN, arn):
            rule = PATTERN_RULES[IMAGE_BUILD_VERSION_ARN_PATTERN]
            raise ValueError(
                f"{self.task_id}: image_build_version_arn={exceptions.shorten(arn)} {rule} (is the upstream XCom the "
                "ARN?)"
            )
        return arn

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):
            return self.image_build_version_arn
        self.defer(
            trigger=self._image_trigger(
                self.image_build_version_arn,
                waiter_delay=self.poke_interval,
                # The trigger polls at once (this poke just did), so one more poll spans the whole timeout.
                waiter_max_attempts=math.ceil(self.timeout / self.poke_interval) + 1,
                cancel_on_kill=False,
                not_found_grace=self.not_found_grace,
                # the status this poke logged: the trigger's log goes on from it instead of repeating it
                last_status=self._transitions.last_status if self._transitions is not None else None,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def _elapsed(self, context: Context) -> float:
        """Seconds since this sensor started watching (across reschedules in reschedule mode)."""
        if self.reschedule:
            first = context["ti"].get_first_reschedule_date(context)
            if isinstance(first, str):  # Airflow 3.0 passes on the supervisor's ISO 8601 text
                first = timezone.parse(first)
            if first is not None:
                return (timezone.utcnow() - first).total_seconds()
        return self._transitions.elapsed if self._transitions is not None else 0.0

    def poke(self, context: Context) -> PokeReturnValue | bool:
        arn = self._checked_arn()
        first_poke = self._transitions is None
        if self._transitions is None:
            self._transitions = waiting.TransitionLog(arn, self.log, time.monotonic)
        poll = self.hook.poll_image(arn)
        if first_poke:
            record_build_links(context, self, arn, poll.image)
        step = waiting.next_step(arn, poll, elapsed=self._elapsed(context), not_found_grace=self.not_found_grace)
        image = dict(poll.image) if poll.image is not None else None
        image_outputs = self.hook.conclude(self._transitions.record(step, poll), image)
        if image_outputs is None:
            gate = self.max_finding_severity
            if gate and image is not None and not diagnostics.scanning_enabled(image.get("imageScanningConfiguration")):
                # The gate can never pass: say so now rather than when the build ends.
                raise exceptions.ImageScanningNotEnabledError(
                    diagnostics.scanning_required_message(self.task_id, gate, f"the build of image {arn}")
                )
            return False
        ImageBuilderAmiLink.record(context, self, arn, image_outputs.get("amis", []))
        finish_image(context, self.hook, arn, image_outputs, self.max_finding_severity, image)
        return PokeReturnValue(is_done=True, xcom_value=arn)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> str:
        if (
            event and event.get("status") == waiting.Outcome.TIMED_OUT.value
        ):  # "timeout" means what it means in poke mode
            raise AirflowSensorTimeout(f"{self.task_id}: {event.get('message')}")
        return super().execute_complete(context, event)
