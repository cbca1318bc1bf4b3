"""ImageBuilderHook: the Image Builder calls of the provider, sync (boto3) and async (aiobotocore).

Each call goes through one retry loop per path, driven by
:class:`~airflow_imagebuilder._decisions.retry.CallRetry` (which error is retried, how, and what is raised);
:meth:`ImageBuilderHook.wait_for_image` polls around :func:`~airflow_imagebuilder._decisions.waiting.next_step`
(when a wait ends, and how).  The hook itself only does I/O.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import time
import uuid
from typing import TYPE_CHECKING, Any

import botocore
import botocore.exceptions
from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from botocore.config import Config

from airflow_imagebuilder import exceptions
from airflow_imagebuilder._adapters import async_clients
from airflow_imagebuilder._decisions import diagnostics, retry, waiting
from airflow_imagebuilder._decisions.states import (
    DEFAULT_NOT_FOUND_GRACE,
    FAILURE_STATES,
    IN_PROGRESS_STATES,
    SUCCESS_STATES,
)
from airflow_imagebuilder.links import build_log_location

if TYPE_CHECKING:
    from airflow_imagebuilder._decisions.retry import CallRetry, RetryPolicy, RetryStep
    from airflow_imagebuilder._decisions.waiting import ImageState, Poll, Step
    from airflow_imagebuilder.exceptions import ImageBuilderApiError
    from airflow_imagebuilder.models import CreateImageRequest, StartImagePipelineExecutionRequest

__all__ = ["ImageBuilderHook"]

#: How the service refuses to cancel a build that already ended.
CANCEL_REFUSED_CODES = frozenset({"ResourceInUseException", "InvalidRequestException"})
#: botocore's own retries, off: the hook's one retry loop keeps the error table (DESIGN.md: botocore's standard and
#: adaptive modes do not retry the 429 CallRateLimitExceededException, its legacy mode retries it with a backoff of
#: its own), the backoff bound and the attempt count in messages exact.
NO_BOTOCORE_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1})
#: Bound of a cancel sent from ``on_kill``: the triggerer gives ``on_kill`` 30 s by default
#: (``[triggerer] on_kill_timeout``), a worker gives a killed task 60 s (``killed_task_cleanup_time``).
ON_KILL_CANCEL_SECONDS = 20.0


class ImageBuilderHook(AwsBaseHook):
    """Interact with AWS EC2 Image Builder through boto3 (and aiobotocore for triggers).

    Additional arguments (such as ``aws_conn_id``, ``region_name``, ``verify``, ``config``) are passed down to
    :class:`~airflow.providers.amazon.aws.hooks.base_aws.AwsBaseHook`.

    :param api_retry: the :class:`~airflow_imagebuilder._decisions.retry.RetryPolicy` (or its fields as a dict) for
        retried API errors.
    """

    IN_PROGRESS_STATES = IN_PROGRESS_STATES
    SUCCESS_STATES = SUCCESS_STATES
    FAILURE_STATES = FAILURE_STATES

    def __init__(
        self,
        aws_conn_id: str | None = AwsBaseHook.default_conn_name,
        verify: bool | str | None = None,
        region_name: str | None = None,
        config: Config | dict[str, Any] | None = None,
        *,
        api_retry: RetryPolicy | dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            aws_conn_id=aws_conn_id, verify=verify, region_name=region_name, client_type="imagebuilder", config=config
        )
        self.retry_policy = retry.RetryPolicy.from_value(api_retry)
        #: The arguments of the connection's clients, as given: what :meth:`renewed` builds a hook from, and what
        #: the shared async clients are keyed on.
        self.client_settings: dict[str, Any] = dict(
            aws_conn_id=aws_conn_id, verify=verify, region_name=region_name, config=config
        )
        #: The boto3 client of the sync calls: ``conn``, until expired credentials make a new hook build another.
        self._sync_client: Any = None

    def get_client_type(
        self, region_name: str | None = None, config: Config | None = None, deferrable: bool = False
    ) -> Any:
        """The boto3 (or aiobotocore) client, with botocore's own retries off unless the user configured them.

        Our retry loop (:meth:`_call`) follows the error table; to use botocore's retries instead, set ``retries``
        in ``config`` (``botocore_config`` of the operators, sensor and triggers) or in the connection's
        ``config_kwargs``.
        """
        config = config or self.config
        if config.retries is None:
            config = config.merge(NO_BOTOCORE_RETRIES)
        return super().get_client_type(region_name=region_name, config=config, deferrable=deferrable)

    def renewed(self) -> ImageBuilderHook:
        """A hook like this one that reads the connection again: how credentials are renewed.

        A hook reads its connection once, on first use; keys rotated in the connection (or renewed by a secrets
        backend) reach only a new hook.
        """
        return type(self)(**self.client_settings, api_retry=self.retry_policy)

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

    def _retry(self, operation: str, deadline: float | None) -> CallRetry:
        """The retry decisions of one call; with ``deadline``, retries stop after that many seconds."""
        policy = self.retry_policy.bounded(deadline) if deadline is not None else self.retry_policy
        return retry.CallRetry(policy, operation, self.aws_conn_id, time.monotonic)

    def _retry_step(self, call: CallRetry, error: BaseException) -> RetryStep:
        """How to retry after a failed attempt, as the error table says (it raises when not to), logged."""
        step = call.failed(error)
        if step.refresh_credentials:
            self.log.warning("%s: credentials expired (%s); re-reading them and retrying once", call.operation, error)
        else:
            self.log.warning(
                "%s attempt %d failed (%s); retrying in %.1fs", call.operation, call.attempts, error, step.delay
            )
        return step

    # ------------------------------------------------------------------------------------------ sync
    def _call(self, operation: str, deadline: float | None = None, **kwargs: Any) -> Any:
        """Call ``operation`` with the boto3 client, retrying as the error table says (for ``deadline`` seconds)."""
        call = self._retry(operation, deadline)
        while True:
            if self._sync_client is None:
                self._sync_client = self.conn
            try:
                return getattr(self._sync_client, botocore.xform_name(operation))(**kwargs)
            except (botocore.exceptions.ClientError, *retry.TRANSPORT_ERRORS) as error:
                step = self._retry_step(call, error)
                if step.refresh_credentials:
                    self._sync_client = self.renewed().conn
                time.sleep(step.delay)

    def create_image(self, request: CreateImageRequest) -> dict[str, Any]:
        """Call CreateImage (retried with the request's client token) and return the response."""
        return dict(self._call("CreateImage", **request.to_api()))

    def start_image_pipeline_execution(self, request: StartImagePipelineExecutionRequest) -> dict[str, Any]:
        """Call StartImagePipelineExecution (retried with the request's client token) and return the response."""
        return dict(self._call("StartImagePipelineExecution", **request.to_api()))

    def get_image_pipeline(self, image_pipeline_arn: str) -> dict[str, Any]:
        """Return the ``imagePipeline`` member of GetImagePipeline."""
        return dict(self._call("GetImagePipeline", imagePipelineArn=image_pipeline_arn)["imagePipeline"])

    def get_image(self, image_build_version_arn: str) -> dict[str, Any]:
        """Return the ``image`` member of GetImage."""
        return dict(self._call("GetImage", imageBuildVersionArn=image_build_version_arn)["image"])

    def find_image(self, image_build_version_arn: str) -> dict[str, Any] | None:
        """Like :meth:`get_image`, but ``None`` while the service does not know the image yet."""
        try:
            return self.get_image(image_build_version_arn)
        except exceptions.ImageBuilderApiError as error:
            _raise_unless_not_found(error)
            return None

    def poll_image(self, image_build_version_arn: str) -> Poll:
        """One GetImage, as the wait step sees it."""
        try:
            return waiting.Poll(image=self.find_image(image_build_version_arn))
        except exceptions.ImageBuilderApiError as error:
            return waiting.Poll(error=error)

    def _pages(self, operation: str, member: str, **kwargs: Any) -> list[dict[str, Any]]:
        """Every item of a paginated list operation (each page retried as any call)."""
        items: list[dict[str, Any]] = []
        while True:
            response = self._call(operation, **kwargs)
            items.extend(response.get(member) or [])
            if not response.get("nextToken"):
                return items
            kwargs["nextToken"] = response["nextToken"]

    def list_workflow_executions(self, image_build_version_arn: str) -> list[dict[str, Any]]:
        return self._pages("ListWorkflowExecutions", "workflowExecutions", imageBuildVersionArn=image_build_version_arn)

    def list_workflow_step_executions(self, workflow_execution_id: str) -> list[dict[str, Any]]:
        return self._pages("ListWorkflowStepExecutions", "steps", workflowExecutionId=workflow_execution_id)

    def list_image_scan_findings(self, image_build_version_arn: str) -> list[dict[str, Any]]:
        filters = [{"name": "imageBuildVersionArn", "values": [image_build_version_arn]}]
        return self._pages("ListImageScanFindings", "findings", filters=filters)

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
        try:
            self._call("CancelImageCreation", deadline, **_cancel_request(image_build_version_arn))
        except exceptions.ImageBuilderApiError as error:
            return self._cancelled(image_build_version_arn, error)
        return self._cancelled(image_build_version_arn)

    def cancel_after_timeout(self, step: Step, cancel: bool) -> Step:
        """Best-effort cancel of a timed-out build: the timeout stands whatever the cancel answers."""
        if not cancel:
            return waiting.with_cancel_note(step, None)
        try:
            return waiting.with_cancel_note(step, self.cancel_image_creation(step.image_build_version_arn))
        except exceptions.ImageBuilderError as error:
            return self._cancel_failed(step, error)

    def _cancelled(self, image_build_version_arn: str, error: ImageBuilderApiError | None = None) -> bool:
        """A cancel's answer: True when cancelled; False (logged) when refused because the build ended; else raise."""
        if error is None:
            self.log.info("Cancelled image creation of %s", image_build_version_arn)
            return True
        if error.code not in CANCEL_REFUSED_CODES:
            raise error
        self.log.warning("Could not cancel image %s: %s", image_build_version_arn, error)
        return False

    def _cancel_failed(self, step: Step, error: exceptions.ImageBuilderError) -> Step:
        """The timed-out step, noting that its best-effort cancel failed (logged, never raised)."""
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
    async def _call_async(self, operation: str, deadline: float | None = None, **kwargs: Any) -> Any:
        """Call ``operation`` with the shared aiobotocore client, retrying as the error table says."""
        call = self._retry(operation, deadline)
        async with async_clients.SHARED_CLIENTS.lease(self):
            while True:
                client = await async_clients.SHARED_CLIENTS.client(self)
                try:
                    return await getattr(client, botocore.xform_name(operation))(**kwargs)
                except (botocore.exceptions.ClientError, *retry.TRANSPORT_ERRORS) as error:
                    step = self._retry_step(call, error)
                    if step.refresh_credentials:
                        async_clients.SHARED_CLIENTS.invalidate(self)
                    await asyncio.sleep(step.delay)

    def client_lease(self) -> Any:
        """``async with hook.client_lease():`` keeps the shared client open across calls (a trigger's wait)."""
        return async_clients.SHARED_CLIENTS.lease(self)

    async def get_image_async(self, image_build_version_arn: str) -> dict[str, Any]:
        """The async twin of :meth:`get_image`."""
        return dict((await self._call_async("GetImage", imageBuildVersionArn=image_build_version_arn))["image"])

    async def find_image_async(self, image_build_version_arn: str) -> dict[str, Any] | None:
        """The async twin of :meth:`find_image`."""
        try:
            return await self.get_image_async(image_build_version_arn)
        except exceptions.ImageBuilderApiError as error:
            _raise_unless_not_found(error)
            return None

    async def poll_image_async(self, image_build_version_arn: str) -> Poll:
        """The async twin of :meth:`poll_image`."""
        try:
            return waiting.Poll(image=await self.find_image_async(image_build_version_arn))
        except exceptions.ImageBuilderApiError as error:
            return waiting.Poll(error=error)

    async def cancel_image_creation_async(self, image_build_version_arn: str, *, deadline: float | None = None) -> bool:
        """The async twin of :meth:`cancel_image_creation`."""
        try:
            await self._call_async("CancelImageCreation", deadline, **_cancel_request(image_build_version_arn))
        except exceptions.ImageBuilderApiError as error:
            return self._cancelled(image_build_version_arn, error)
        return self._cancelled(image_build_version_arn)

    async def cancel_after_timeout_async(self, step: Step, cancel: bool) -> Step:
        """The async twin of :meth:`cancel_after_timeout`."""
        if not cancel:
            return waiting.with_cancel_note(step, None)
        try:
            return waiting.with_cancel_note(step, await self.cancel_image_creation_async(step.image_build_version_arn))
        except exceptions.ImageBuilderError as error:
            return self._cancel_failed(step, error)


def _raise_unless_not_found(error: ImageBuilderApiError) -> None:
    """Raise ``error`` unless it says that the image does not exist (yet): eventual consistency after a create."""
    if retry.classify(error.code) is not retry.ErrorAction.NOT_FOUND:
        raise error


def _cancel_request(image_build_version_arn: str) -> dict[str, Any]:
    """CancelImageCreation arguments with one client token for all retries of this cancel."""
    return {"imageBuildVersionArn": image_build_version_arn, "clientToken": str(uuid.uuid4())}
