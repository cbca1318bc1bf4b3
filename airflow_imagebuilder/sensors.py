"""ImageBuilderImageSensor: wait for an image build version to become AVAILABLE."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.sensors.base_aws import AwsBaseSensor
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import PokeReturnValue, conf

from airflow_imagebuilder.exceptions import ImageBuildFailedError
from airflow_imagebuilder.hooks import (
    ImageBuilderHook,
    ImageState,
    StatusTracker,
    failure_message,
    image_outputs,
    push_image_outputs,
)
from airflow_imagebuilder.links import ImageBuilderImageLink

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


class ImageBuilderImageSensor(AwsBaseSensor[ImageBuilderHook]):
    """
    Wait until an image build version is AVAILABLE; fail as soon as it reaches a failure state.

    Works in ``poke``, ``reschedule`` and deferrable mode; ``timeout`` means the same in all three.  Once
    AVAILABLE, pushes the same XCom keys as the operator (``amis``, ``ami_ids``, ``container_image_uris``) and
    returns the ARN.  The sensor only watches: it never cancels the build.

    :param image_build_version_arn: the image build version ARN, e.g. ``create.output`` (templated).
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``).
    :param poke_interval: seconds between two status reads (default 60).
    :param api_retry: fields of :class:`~airflow_imagebuilder.hooks.RetryPolicy` for throttled/5xx API calls.
    :param aws_conn_id: the Airflow connection used for AWS credentials.
    :param region_name: AWS region; defaults to the connection's.
    :param verify: whether or not to verify SSL certificates.
    :param botocore_config: configuration dictionary for the botocore client.
    """

    aws_hook_class = ImageBuilderHook
    template_fields: Sequence[str] = aws_template_fields("image_build_version_arn")
    operator_extra_links = (ImageBuilderImageLink(),)
    ui_color = "#ff9900"

    def __init__(
        self,
        *,
        image_build_version_arn: str,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float = 60,
        api_retry: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.image_build_version_arn = image_build_version_arn
        self.deferrable = deferrable
        self.api_retry = api_retry
        self._tracker: StatusTracker | None = None

    @property
    def _hook_parameters(self) -> dict[str, Any]:
        return {**super()._hook_parameters, "api_retry": self.api_retry}

    def _checked_arn(self) -> str:
        arn = self.image_build_version_arn
        if not isinstance(arn, str) or not arn.startswith("arn:"):
            raise ValueError(
                f"{self.task_id}: image_build_version_arn must be an image build version ARN string, got "
                f"{type(arn).__name__} {arn!r} (is the upstream XCom the ARN?)"
            )
        return arn

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):
            return self.image_build_version_arn
        from airflow_imagebuilder.triggers import ImageBuilderImageTrigger  # only when deferring: light parse

        self.defer(
            trigger=ImageBuilderImageTrigger(
                image_build_version_arn=self.image_build_version_arn,
                waiter_delay=self.poke_interval,
                waiter_max_attempts=max(1, math.ceil(self.timeout / self.poke_interval)),
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                verify=self.verify,
                botocore_config=self.botocore_config,
                cancel_on_kill=False,
                api_retry=self.api_retry,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def poke(self, context: Context) -> PokeReturnValue | bool:
        arn = self._checked_arn()
        if self._tracker is None:
            self._tracker = StatusTracker(arn, self.log)
            ImageBuilderImageLink.record(context, self, arn)
        image = self.hook.find_image(arn)
        if image is None:  # not visible yet right after CreateImage
            return False
        state = ImageState.of(image)
        outcome = self._tracker.observe(state)
        if outcome == "failure":
            raise ImageBuildFailedError(failure_message(arn, state), arn, state.status, state.reason)
        if outcome == "success":
            push_image_outputs(context, arn, image_outputs(image), self.log)
            return PokeReturnValue(is_done=True, xcom_value=arn)
        return False

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> str:
        from airflow_imagebuilder.triggers import resolve_event

        push_image_outputs(context, self.image_build_version_arn, resolve_event(event), self.log)
        return self.image_build_version_arn
