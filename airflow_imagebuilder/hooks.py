"""ImageBuilderHook: the Image Builder calls of the provider, sync (boto3) and async (aiobotocore).

Each call goes through one retry loop per path, driven by :class:`~airflow_imagebuilder.retry.CallRetry` (which
error is retried, how, and what is raised); :meth:`ImageBuilderHook.wait_for_image` polls around
:func:`~airflow_imagebuilder.waiting.next_step` (when a wait ends, and how).  The hook itself only does I/O.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import time
import uuid
from typing import TYPE_CHECKING, Any

import botocore.exceptions
from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from asgiref.sync import sync_to_async
from botocore.config import Config

from airflow_imagebuilder.links import build_log_location
from airflow_imagebuilder.states import DEFAULT_NOT_FOUND_GRACE, FAILURE_STATES, IN_PROGRESS_STATES, SUCCESS_STATES

if TYPE_CHECKING:
    from airflow_imagebuilder import async_clients, diagnostics, exceptions, retry, waiting
    from airflow_imagebuilder.exceptions import ImageBuilderApiError
    from airflow_imagebuilder.models import CreateImageRequest, StartImagePipelineExecutionRequest
    from airflow_imagebuilder.retry import CallRetry, RetryPolicy
    from airflow_imagebuilder.waiting import ImageState, Poll, Step
else:  # execution machinery, loaded on first use (see lazy.py)
    from airflow_imagebuilder.lazy import async_clients, diagnostics, exceptions, retry, waiting

__all__ = ["ImageBuilderHook"]

#: How the service refuses to cancel a build that already ended.
CANCEL_REFUSED_CODES = frozenset({"ResourceInUseException", "InvalidRequestException"})
#: Bound of a cancel sent from ``on_kill``: the triggerer gives ``on_kill`` 30 s by default
#: (``[triggerer] on_kill_timeout``), a worker gives a killed task 60 s (``killed_task_cleanup_time``).
ON_KILL_CANCEL_SECONDS = 20.0


class ImageBuilderHook(AwsBaseHook):
    """Interact with AWS EC2 Image Builder through boto3 (and aiobotocore for triggers).

    Additional arguments (such as ``aws_conn_id``, ``region_name``, ``verify``, ``config``) are passed down to
    :class:`~airflow.providers.amazon.aws.hooks.base_aws.AwsBaseHook`.

    :param api_retry: the :class:`~airflow_imagebuilder.retry.RetryPolicy` (or its fields as a dict) for
        retried API errors.
    """

    IN_PROGRESS_STATES = IN_PROGRESS_STATES
    SUCCESS_STATES = SUCCESS_STATES
    FAILURE_STATES = FAILURE_STATES

    def __init__(self, *args: Any, api_retry: RetryPolicy | dict[str, Any] | None = None, **kwargs: Any) -> None:
        kwargs["client_type"] = "imagebuilder"
        super().__init__(*args, **kwargs)
        self.retry_policy = retry.RetryPolicy.from_value(api_retry)

    def _get_config(self, config: Config | None = None) -> Config:
        """Leave retries to :meth:`_call` unless the user configured botocore's own.

        One retry loop (ours) keeps the error table's behaviour, the backoff bound and the attempt count in
        messages exact; botocore's legacy mode would otherwise retry the 429 with its own multi-second backoff
        and its standard mode would not retry it at all.
        """
        merged = super()._get_config(config)
        if "retries" not in getattr(merged, "_user_provided_options", {}):
            merged = merged.merge(Config(retries={"mode": "standard", "total_max_attempts": 1}))
        return merged

    def refresh_credentials(self) -> None:
        """Forget the cached connection and client, so the next call reads the connection's credentials again."""
        for name in ("conn", "conn_config", "_client"):
            self.__dict__.pop(name, None)

    def connection_fingerprint(self) -> str:
        """A digest of the connection's settings, to notice when the connection was edited."""
        if not self.aws_conn_id:
            return ""
        try:
            conn = self.get_connection(self.aws_conn_id)
        except Exception:  # not found or not reachable: the client build will say so
            return ""
        material = json.dumps(
            [conn.conn_type, conn.host, conn.login, conn.password, conn.schema, conn.port, conn.extra_dejson],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(material.encode()).hexdigest()

    async def connection_fingerprint_async(self) -> str:
        return await sync_to_async(self.connection_fingerprint)()

    def _retry(self, operation: str, policy: RetryPolicy | None = None) -> CallRetry:
        return retry.CallRetry(policy or self.retry_policy, operation, self.aws_conn_id, time.monotonic)

    def _log_retry(self, operation: str, attempt: int, error: BaseException, delay: float, refresh: bool) -> None:
        if refresh:
            self.log.warning("%s: credentials expired (%s); re-reading them and retrying once", operation, error)
        else:
            self.log.warning("%s attempt %d failed (%s); retrying in %.1fs", operation, attempt, error, delay)

    # ------------------------------------------------------------------------------------------ sync
    def _call(self, operation: str, method: str, policy: RetryPolicy | None = None, **kwargs: Any) -> Any:
        """Call ``method`` of the boto3 client, retrying as the error table says."""
        call = self._retry(operation, policy)
        while True:
            try:
                return getattr(self.conn, method)(**kwargs)
            except (botocore.exceptions.ClientError, *retry.TRANSPORT_ERRORS) as error:
                step = call.failed(error)
                self._log_retry(operation, call.attempts, error, step.delay, step.refresh_credentials)
                if step.refresh_credentials:
                    self.refresh_credentials()
                time.sleep(step.delay)

    def create_image(self, request: CreateImageRequest) -> dict[str, Any]:
        """Call CreateImage (retried with the request's client token) and return the response."""
        return dict(self._call("CreateImage", "create_image", **request.to_api()))

    def start_image_pipeline_execution(self, request: StartImagePipelineExecutionRequest) -> dict[str, Any]:
        """Call StartImagePipelineExecution (retried with the request's client token) and return the response."""
        return self._call("StartImagePipelineExecution", "start_image_pipeline_execution", **request.to_api())

    def get_image_pipeline(self, image_pipeline_arn: str) -> dict[str, Any]:
        """Return the ``imagePipeline`` member of GetImagePipeline."""
        response = self._call("GetImagePipeline", "get_image_pipeline", imagePipelineArn=image_pipeline_arn)
        return dict(response["imagePipeline"])

    def get_image(self, image_build_version_arn: str) -> dict[str, Any]:
        """Return the ``image`` member of GetImage."""
        return self._call("GetImage", "get_image", imageBuildVersionArn=image_build_version_arn)["image"]

    def find_image(self, image_build_version_arn: str) -> dict[str, Any] | None:
        """Like :meth:`get_image`, but ``None`` while the service does not know the image yet."""
        try:
            return self.get_image(image_build_version_arn)
        except exceptions.ImageBuilderApiError as error:
            if retry.classify(error.code) is retry.ErrorAction.NOT_FOUND:
                return None
            raise

    def poll_image(self, image_build_version_arn: str) -> Poll:
        """One GetImage, as the wait step sees it."""
        try:
            return waiting.Poll(image=self.find_image(image_build_version_arn))
        except exceptions.ImageBuilderApiError as error:
            return waiting.Poll(error=error)

    def _pages(self, operation: str, method: str, member: str, **kwargs: Any) -> list[dict[str, Any]]:
        """Every item of a paginated list operation (each page retried as any call)."""
        items: list[dict[str, Any]] = []
        while True:
            response = self._call(operation, method, **kwargs)
            items.extend(response.get(member) or [])
            if not response.get("nextToken"):
                return items
            kwargs["nextToken"] = response["nextToken"]

    def list_workflow_executions(self, image_build_version_arn: str) -> list[dict[str, Any]]:
        return self._pages(
            "ListWorkflowExecutions",
            "list_workflow_executions",
            "workflowExecutions",
            imageBuildVersionArn=image_build_version_arn,
        )

    def list_workflow_step_executions(self, workflow_execution_id: str) -> list[dict[str, Any]]:
        return self._pages(
            "ListWorkflowStepExecutions",
            "list_workflow_step_executions",
            "steps",
            workflowExecutionId=workflow_execution_id,
        )

    def list_image_scan_findings(self, image_build_version_arn: str) -> list[dict[str, Any]]:
        filters = [{"name": "imageBuildVersionArn", "values": [image_build_version_arn]}]
        return self._pages("ListImageScanFindings", "list_image_scan_findings", "findings", filters=filters)

    def explain_failure(self, step: Step, image: dict[str, Any] | None = None) -> Step:
        """The failed step with which workflow and step failed, and where the build's logs are, in its message.

        Never raises: without permission for the workflow calls, the message gets one line naming them; any other
        error reading the details is one line too, and whatever was read before it stays.
        """
        arn = step.image_build_version_arn
        lines: list[str] = []
        try:
            workflows = self.list_workflow_executions(arn)
            steps: dict[str, list[dict[str, Any]]] = {}
            for workflow in workflows:
                execution_id = str(workflow.get("workflowExecutionId") or "")
                if execution_id and workflow.get("status") in diagnostics.ENDED_WORKFLOW_STATUSES:
                    steps[execution_id] = self.list_workflow_step_executions(execution_id)
        except (exceptions.ImageBuilderApiError, botocore.exceptions.BotoCoreError) as error:
            if getattr(error, "code", None) in retry.AUTH_CODES:
                lines.append(
                    f"(Allow {diagnostics.DIAGNOSTIC_PERMISSIONS} to the connection to see which workflow step failed.)"
                )
            else:
                lines.append(f"(Workflow details unavailable: {error})")
        else:
            lines += diagnostics.workflow_lines(workflows, steps)
        try:
            image = image if image is not None else self.get_image(arn)
            lines.append(diagnostics.log_line(*build_log_location(image)))
        except (exceptions.ImageBuilderApiError, botocore.exceptions.BotoCoreError, ValueError) as error:
            self.log.warning("Could not read image %s for its log location: %s", arn, error)
        return dataclasses.replace(step, message="\n".join([step.message or "", *lines]))

    def conclude(self, step: Step, image: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Act on a wait step: None while waiting, the outputs of a success; raise the outcome's exception.

        A failed build's message is completed with :meth:`explain_failure` first (in the worker, every mode).
        """
        if step.outcome is waiting.Outcome.FAILED:
            step = self.explain_failure(step, image)
            self.log.error("%s", step.message)
        return step.raise_for_outcome()

    def gate_scan_findings(
        self, image_build_version_arn: str, max_finding_severity: str, image: dict[str, Any] | None = None
    ) -> dict[str, int]:
        """Read the image's scan findings; return the count per severity, or raise past ``max_finding_severity``.

        Only a COMPLETED scan passes: a scan still running raises a retryable error, one that failed, timed out or
        was abandoned (or no scanning at all) fails the task.  ``image`` is the AVAILABLE image, when at hand.
        """
        image = image if image is not None else self.get_image(image_build_version_arn)
        if problem := diagnostics.scan_problem(image_build_version_arn, image):
            message, retryable = problem
            message += f"; max_finding_severity={max_finding_severity!r} needs a completed scan"
            raise (
                exceptions.ImageScanIncompleteError(message) if retryable else exceptions.ImageScanFailedError(message)
            )
        findings = self.list_image_scan_findings(image_build_version_arn)
        counts = diagnostics.severity_counts(findings)
        above = diagnostics.findings_above(findings, max_finding_severity)
        if above:
            raise exceptions.ImageScanFindingsError(
                diagnostics.gate_message(image_build_version_arn, max_finding_severity, above, counts),
                image_build_version_arn,
                counts,
            )
        self.log.info("Scan findings of %s within %s: %s", image_build_version_arn, max_finding_severity, counts)
        return counts

    def get_image_state(self, image_build_version_arn: str) -> ImageState:
        return waiting.ImageState.of(self.get_image(image_build_version_arn))

    def cancel_image_creation(self, image_build_version_arn: str, *, deadline: float | None = None) -> bool:
        """Cancel a build; return False (and log why) when the service refuses because it already ended.

        :param deadline: give up retrying after this many seconds (for ``on_kill``).
        """
        policy = self.retry_policy.bounded(deadline) if deadline is not None else None
        try:
            self._call(
                "CancelImageCreation", "cancel_image_creation", policy, **_cancel_request(image_build_version_arn)
            )
        except exceptions.ImageBuilderApiError as error:
            return self._cancel_refused(image_build_version_arn, error)
        self.log.info("Cancelled image creation of %s", image_build_version_arn)
        return True

    def _cancel_refused(self, image_build_version_arn: str, error: ImageBuilderApiError) -> bool:
        if error.code not in CANCEL_REFUSED_CODES:
            raise error
        self.log.warning("Could not cancel image %s: %s", image_build_version_arn, error)
        return False

    def cancel_after_timeout(self, step: Step, cancel: bool) -> Step:
        """Best-effort cancel of a timed-out build: the timeout stands whatever the cancel answers."""
        if not cancel:
            return waiting.with_cancel_note(step, None)
        try:
            return waiting.with_cancel_note(step, self.cancel_image_creation(step.image_build_version_arn))
        except exceptions.ImageBuilderError as error:
            self.log.warning("Could not cancel timed-out image %s: %s", step.image_build_version_arn, error)
            return waiting.with_cancel_note(step, error)

    def wait_for_image(
        self,
        image_build_version_arn: str,
        *,
        waiter_delay: float = 60,
        waiter_max_attempts: int = 720,
        not_found_grace: float = DEFAULT_NOT_FOUND_GRACE,
        known_image: dict[str, Any] | None = None,
        cancel_on_timeout: bool = True,
    ) -> dict[str, Any]:
        """Poll until the image is AVAILABLE and return it; raise the outcome's exception otherwise.

        Logs one line per status transition.  Raises :class:`~.exceptions.ImageBuildFailedError` on a failure
        state, and :class:`~.exceptions.ImageBuildTimeoutError` when ``waiter_max_attempts`` polls pass (after a
        best-effort cancel when ``cancel_on_timeout``).  ``known_image`` is the image as the caller just read
        it; it stands in for the first poll.
        """
        transitions = waiting.TransitionLog(image_build_version_arn, self.log)
        for attempt in range(1, waiter_max_attempts + 1):
            if attempt == 1 and known_image is not None:
                poll = waiting.Poll(image=known_image)
            else:
                poll = self.poll_image(image_build_version_arn)
            step = waiting.next_step(
                image_build_version_arn,
                poll,
                elapsed=transitions.elapsed,
                attempt=attempt,
                max_attempts=waiter_max_attempts,
                waiter_delay=waiter_delay,
                not_found_grace=not_found_grace,
            )
            transitions.record(step, poll)
            if step.outcome is waiting.Outcome.SUCCEEDED and poll.image is not None:
                return dict(poll.image)
            if step.outcome is waiting.Outcome.TIMED_OUT:
                step = self.cancel_after_timeout(step, cancel_on_timeout)
            self.conclude(step, dict(poll.image) if poll.image is not None else None)
            time.sleep(waiter_delay)
        raise ValueError(f"waiter_max_attempts must be at least 1, got {waiter_max_attempts}")

    # ------------------------------------------------------------------------------------------ async
    async def _call_async(self, operation: str, method: str, policy: RetryPolicy | None = None, **kwargs: Any) -> Any:
        """Call ``method`` of the shared aiobotocore client, retrying as the error table says."""
        call = self._retry(operation, policy)
        async with async_clients.SHARED_CLIENTS.lease(self):
            while True:
                client = await async_clients.SHARED_CLIENTS.client(self)
                try:
                    return await getattr(client, method)(**kwargs)
                except (botocore.exceptions.ClientError, *retry.TRANSPORT_ERRORS) as error:
                    step = call.failed(error)
                    self._log_retry(operation, call.attempts, error, step.delay, step.refresh_credentials)
                    if step.refresh_credentials:
                        self.refresh_credentials()
                        async_clients.SHARED_CLIENTS.invalidate(self)
                    await asyncio.sleep(step.delay)

    def client_lease(self) -> Any:
        """``async with hook.client_lease():`` keeps the shared client open across calls (a trigger's wait)."""
        return async_clients.SHARED_CLIENTS.lease(self)

    async def find_image_async(self, image_build_version_arn: str) -> dict[str, Any] | None:
        try:
            response = await self._call_async("GetImage", "get_image", imageBuildVersionArn=image_build_version_arn)
        except exceptions.ImageBuilderApiError as error:
            if retry.classify(error.code) is retry.ErrorAction.NOT_FOUND:
                return None
            raise
        return dict(response["image"])

    async def poll_image_async(self, image_build_version_arn: str) -> Poll:
        try:
            return waiting.Poll(image=await self.find_image_async(image_build_version_arn))
        except exceptions.ImageBuilderApiError as error:
            return waiting.Poll(error=error)

    async def cancel_image_creation_async(self, image_build_version_arn: str, *, deadline: float | None = None) -> bool:
        policy = self.retry_policy.bounded(deadline) if deadline is not None else None
        try:
            await self._call_async(
                "CancelImageCreation", "cancel_image_creation", policy, **_cancel_request(image_build_version_arn)
            )
        except exceptions.ImageBuilderApiError as error:
            return self._cancel_refused(image_build_version_arn, error)
        self.log.info("Cancelled image creation of %s", image_build_version_arn)
        return True

    async def cancel_after_timeout_async(self, step: Step, cancel: bool) -> Step:
        """The async twin of :meth:`cancel_after_timeout`."""
        if not cancel:
            return waiting.with_cancel_note(step, None)
        try:
            return waiting.with_cancel_note(step, await self.cancel_image_creation_async(step.image_build_version_arn))
        except exceptions.ImageBuilderError as error:
            self.log.warning("Could not cancel timed-out image %s: %s", step.image_build_version_arn, error)
            return waiting.with_cancel_note(step, error)


def _cancel_request(image_build_version_arn: str) -> dict[str, Any]:
    """CancelImageCreation arguments with one client token for all retries of this cancel."""
    return {"imageBuildVersionArn": image_build_version_arn, "clientToken": str(uuid.uuid4())}
