"""Operators that start an image build as an idempotent DAG step and (by default) wait for it.

:class:`ImageBuildOperator` holds what every such operator shares: the client token walk, the wait (sync or
deferred), the outputs, cancel on kill.  A subclass says which request it renders and which call starts the build;
its ``__init__`` stores its own arguments after the base class's and checks the literal ones
(``_check_arguments``), so a broken DAG fails when it is parsed.  A mapped task is checked when it runs, as Airflow
builds it then.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.links.base_aws import BaseAwsLink
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import conf

from airflow_imagebuilder import exceptions, models
from airflow_imagebuilder._decisions import diagnostics, lineage, waiting
from airflow_imagebuilder._decisions import token as client_tokens
from airflow_imagebuilder._decisions.fields import REQUEST_FIELDS
from airflow_imagebuilder._decisions.states import (
    DEFAULT_NOT_FOUND_GRACE,
    DEFAULT_SAFETY_POLL_INTERVAL,
    FAILURE_STATES,
    SUCCESS_STATES,
)
from airflow_imagebuilder._image_wait import ImageWaitMixin, finish_image
from airflow_imagebuilder.hooks import ON_KILL_CANCEL_SECONDS, ImageBuilderHook
from airflow_imagebuilder.links import (
    ImageBuilderAmiLink,
    ImageBuilderImageLink,
    ImageBuilderLogsLink,
    record_build_links,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context
    from airflow.providers.openlineage.extractors import OperatorLineage

    from airflow_imagebuilder.models import StartImagePipelineExecutionRequest

__all__ = [
    "ImageBuildOperator",
    "ImageBuilderCreateImageOperator",
    "ImageBuilderStartPipelineExecutionOperator",
]

#: Generations tried before giving up: each one is a build that ended in a failure state, so reaching this many
#: means something is wrong with the recipe.
MAX_GENERATIONS = 100
#: The members of an image pipeline that decide what it builds: they enter the client tokens of its executions.
PIPELINE_BUILD_MEMBERS = (
    "imageRecipeArn",
    "containerRecipeArn",
    "infrastructureConfigurationArn",
    "distributionConfigurationArn",
    "imageTestsConfiguration",
    "imageScanningConfiguration",
    "workflows",
)
#: Stands in for values that are only known after rendering, so literal fields can be checked at parse time.
_PLACEHOLDERS: dict[str, str] = {
    "clientToken": "parse-time-check",
    "infrastructureConfigurationArn": "arn:aws:imagebuilder:us-east-1:123456789012:infrastructure-configuration/x",
    "imageRecipeArn": "arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/x/1.0.0",
    "containerRecipeArn": "arn:aws:imagebuilder:us-east-1:123456789012:container-recipe/x/1.0.0",
    "imagePipelineArn": "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/x",
}

_RECIPES = ("imageRecipeArn", "containerRecipeArn")


def is_literal(value: Any) -> bool:
    """True when a value has no Jinja template and no XComArg (or other resolvable) inside."""
    if isinstance(value, str):
        return "{{" not in value and "{%" not in value
    if isinstance(value, dict):
        return all(is_literal(key) and is_literal(item) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return all(is_literal(item) for item in value)
    return not hasattr(value, "resolve")


#: Defaults of the arguments every image build operator takes (see :class:`ImageBuildOperator`).
DEFAULT_WAITER_DELAY = 30
DEFAULT_WAITER_MAX_ATTEMPTS = 1440  # 12 hours at the default delay
DEFAULT_DEFERRABLE = conf.getboolean("operators", "default_deferrable", fallback=False)


def client_token_namespace() -> str:
    """``[imagebuilder] client_token_namespace``: enters every derived token (empty by default)."""
    return conf.get("imagebuilder", "client_token_namespace", fallback="") or ""


class ImageBuildOperator(AwsBaseOperator[ImageBuilderHook], ImageWaitMixin):
    """
    Base of the operators that start an image build: client tokens, waiting, outputs and cancel on kill.

    Unless ``client_token`` is given, the client token is derived from the task instance, the rendered request
    and ``[imagebuilder] client_token_namespace``, with a generation counter: retries and reruns follow the
    build already in flight, reuse an image already AVAILABLE, and start a new build only after a FAILED or
    CANCELLED one.  With ``force_rebuild=True`` the tokens also carry the first try number of the current series
    of tries (a clear starts a new series, a retry does not): a rerun builds anew, while a retry follows or
    reuses the build its own series already started.

    Returns the image build version ARN.  XCom keys pushed: ``client_token``; once AVAILABLE, ``amis``
    (``[{"region", "image", "name", "accountId"}]``), ``ami_ids`` (``{region: ami id}``),
    ``container_image_uris_by_region`` (``{region: [uri, ...]}``) and ``container_image_uris`` (the same URIs as
    one list).

    :param client_token: use this client token verbatim for every try instead of deriving one.
    :param force_rebuild: build anew even when an identical request already produced an AVAILABLE image.
    :param wait_for_completion: wait until the image is AVAILABLE (default True).
    :param waiter_delay: seconds between two status polls (default 30).
    :param waiter_max_attempts: polls before giving up (default 1440: 12 hours).
    :param deferrable: wait in the triggerer instead of the worker (default ``[operators] default_deferrable``).
    :param cancel_on_kill: cancel the build when the task is killed, marked failed or its wait times out
        (default True).
    :param api_retry: fields of :class:`~airflow_imagebuilder._decisions.retry.RetryPolicy` for throttled/5xx API calls.
    :param max_finding_severity: the most severe image scan finding allowed (``INFORMATIONAL``, ``LOW``,
        ``MEDIUM``, ``HIGH`` or ``CRITICAL``); once AVAILABLE, the task reads the image's scan findings, pushes
        ``scan_findings_counts`` and fails without retries, naming the worst, past it.  Needs image scanning
        enabled.  Default None: no gate.
    :param completion_queue_url: an SQS queue receiving Image Builder's state change events; a deferred wait
        then learns the outcome from it instead of polling (templated; see
        :class:`~airflow_imagebuilder.triggers.ImageBuilderImageTrigger`).  Default None: polling.
    :param safety_poll_interval: seconds between the safety GetImage calls of an event-driven wait (600).
    :param str aws_conn_id: the Airflow connection used for AWS credentials.
    :param str region_name: AWS region; defaults to the connection's.
    :param bool verify: whether or not to verify SSL certificates.
    :param dict botocore_config: configuration dictionary for the botocore client.
    """

    aws_hook_class = ImageBuilderHook
    operator_extra_links: tuple[BaseAwsLink, ...] = (
        ImageBuilderImageLink(),
        ImageBuilderLogsLink(),
        ImageBuilderAmiLink(),
    )
    ui_color = "#ff9900"
    #: The API operation that starts a build (for logs and messages).
    start_operation = ""

    def __init__(
        self,
        *,
        client_token: str | None = None,
        force_rebuild: bool = False,
        wait_for_completion: bool = True,
        waiter_delay: float = DEFAULT_WAITER_DELAY,
        waiter_max_attempts: int = DEFAULT_WAITER_MAX_ATTEMPTS,
        deferrable: bool = DEFAULT_DEFERRABLE,
        cancel_on_kill: bool = True,
        api_retry: dict[str, Any] | None = None,
        max_finding_severity: str | None = None,
        completion_queue_url: str | None = None,
        safety_poll_interval: float = DEFAULT_SAFETY_POLL_INTERVAL,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.client_token = client_token
        self.force_rebuild = force_rebuild
        self.wait_for_completion = wait_for_completion
        self.waiter_delay = waiter_delay
        self.waiter_max_attempts = waiter_max_attempts
        self.deferrable = deferrable
        self.cancel_on_kill = cancel_on_kill
        self.api_retry = api_retry
        self.max_finding_severity = max_finding_severity
        self.completion_queue_url = completion_queue_url
        self.safety_poll_interval = safety_poll_interval
        self._in_flight_arn: str | None = None

    def _check_arguments(self) -> None:
        """Check the literal arguments (a subclass's ``__init__`` calls this once it has stored its own)."""
        self._check_shared_arguments()
        self._request(literal_only=True)
        if self.max_finding_severity is not None and not self.wait_for_completion:
            raise ValueError(
                f"{self.task_id}: max_finding_severity needs wait_for_completion=True (the gate judges the "
                "image once it is AVAILABLE); or gate with ImageBuilderImageSensor(max_finding_severity=...)"
            )
        if self.force_rebuild and self.client_token is not None:
            raise ValueError(
                f"{self.task_id}: force_rebuild=True needs a derived client token; a fixed client_token always "
                "names the same build. Drop client_token or force_rebuild."
            )

    @property
    def _hook_parameters(self) -> dict[str, Any]:
        return {**super()._hook_parameters, "api_retry": self.api_retry}

    # ------------------------------------------------------------------------------- for subclasses
    def _request(self, literal_only: bool = False) -> dict[str, Any]:
        """The request in API form, validated, without ``clientToken`` unless the user gave one.  With
        ``literal_only`` (while the DAG is parsed), templated values stand in as valid placeholders or are left
        out: they are checked after rendering."""
        raise NotImplementedError

    def _start_build(self, request: dict[str, Any], token: str) -> str:
        """Send the request with ``token``; return the image build version ARN."""
        raise NotImplementedError

    def _build_content(self, request: dict[str, Any]) -> dict[str, Any]:
        """Check that the request can start a build (once per try, before any build starts) and return what the
        build is made of, which enters the derived client token.  The request itself, unless it names more."""
        return request

    # ------------------------------------------------------------------------------------ execution
    def execute(self, context: Context) -> str:
        request = self._request()
        arn, token, image = self._start_or_find_build(context, request, self._build_content(request))
        context["ti"].xcom_push(key="client_token", value=token)
        record_build_links(context, self, arn, image or {"loggingConfiguration": request.get("loggingConfiguration")})
        if image is not None and waiting.ImageState.of(image).status in SUCCESS_STATES:  # reused
            ImageBuilderAmiLink.record(context, self, arn, waiting.image_outputs(image)["amis"])
            finish_image(context, self.hook, arn, waiting.image_outputs(image), self.max_finding_severity, image)
            return arn
        if not self.wait_for_completion:
            return arn
        if self.deferrable:
            self.defer(
                trigger=self._image_trigger(
                    arn,
                    waiter_delay=self.waiter_delay,
                    waiter_max_attempts=self.waiter_max_attempts,
                    cancel_on_kill=self.cancel_on_kill,
                ),
                method_name="execute_complete",
                # The trigger times out (and cancels) first; this only bounds a trigger that never fires.
                timeout=timedelta(seconds=self.waiter_delay * self.waiter_max_attempts + 10 * 60),
            )
        if self.completion_queue_url:
            self.log.warning("completion_queue_url applies to deferrable waits; this sync wait polls GetImage")
        self._in_flight_arn = arn
        image = self.hook.wait_for_image(
            arn,
            waiter_delay=self.waiter_delay,
            waiter_max_attempts=self.waiter_max_attempts,
            not_found_grace=DEFAULT_NOT_FOUND_GRACE,
            known_image=image,
            cancel_on_timeout=self.cancel_on_kill,
        )
        self._in_flight_arn = None
        ImageBuilderAmiLink.record(context, self, arn, waiting.image_outputs(image)["amis"])
        finish_image(context, self.hook, arn, waiting.image_outputs(image), self.max_finding_severity, image)
        return arn

    def _token(self, context: Context, request: dict[str, Any], generation: int) -> str:
        if self.client_token is not None:
            return self.client_token
        ti = context["ti"]
        identity = {"dag_id": ti.dag_id, "task_id": ti.task_id, "run_id": ti.run_id, "map_index": ti.map_index}
        # A clear sets max_tries to try_number + retries, so this is the first try number of the current series.
        series = ti.max_tries - (self.retries or 0) + 1 if self.force_rebuild else None
        return client_tokens.derive_client_token(
            identity, request, generation, namespace=client_token_namespace(), series=series
        )

    def _start_or_find_build(
        self, context: Context, request: dict[str, Any], content: dict[str, Any] | None = None
    ) -> tuple[str, str, dict[str, Any] | None]:
        """Send the start call with the token of each generation until one names a build worth following.

        Returns (ARN, client token, the image as just read: AVAILABLE when reused, None while not yet visible).
        """
        for generation in range(MAX_GENERATIONS):
            token = self._token(context, request if content is None else content, generation)
            self.log.info("%s with client token %s (generation %d)", self.start_operation, token, generation)
            try:
                arn = self._start_build(request, token)
            except exceptions.ImageBuilderApiError as error:
                if error.code != "IdempotentParameterMismatchException":
                    raise
                raise type(error)(**(error.fields() | {"hint": f"Client token {token!r}: {error.hint}"})) from error
            image = self.hook.find_image(arn)
            state = waiting.ImageState.of(image) if image is not None else waiting.ImageState("PENDING")
            if state.status in FAILURE_STATES:
                if self.client_token is not None:
                    raise exceptions.ImageBuildFailedError(
                        waiting.failure_message(arn, state) + f". The fixed client_token {token!r} always names this "
                        "build; omit client_token (or change it) to build again.",
                        arn,
                        state.status,
                        state.reason,
                    )
                self.log.info(
                    "%s; starting a new build with the next client token", waiting.failure_message(arn, state)
                )
                continue
            if state.status in SUCCESS_STATES:
                self.log.info(
                    "Reusing image %s: an identical request of this task instance%s already built it and it is "
                    "AVAILABLE (client token %s).%s",
                    arn,
                    " (in this series of tries)" if self.force_rebuild else "",
                    token,
                    "" if self.force_rebuild else " Pass force_rebuild=True to build anew.",
                )
            else:
                self.log.info("Following image %s (status %s)", arn, state.status)
            return arn, token, image
        raise exceptions.ImageBuilderError(
            f"{MAX_GENERATIONS} builds of this request (client tokens of generations 0-{MAX_GENERATIONS - 1}) "
            "ended without an image to use; giving up"
        )

    def get_openlineage_facets_on_start(self) -> OperatorLineage:
        """OpenLineage inputs: the recipe and configurations, or the pipeline."""
        return lineage.facets_on_start(self)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage inputs and outputs: the image build version and its AMIs or container images."""
        return lineage.facets_on_complete(self, task_instance)

    def on_kill(self) -> None:
        """Cancel the build this task is waiting for (bounded, so it fits the time a killed task is given)."""
        if not (self.cancel_on_kill and self._in_flight_arn):
            return
        try:
            self.hook.cancel_image_creation(self._in_flight_arn, deadline=ON_KILL_CANCEL_SECONDS)
        except exceptions.ImageBuilderError as error:
            self.log.warning("Could not cancel image %s on kill: %s", self._in_flight_arn, error)


class ImageBuilderCreateImageOperator(ImageBuildOperator):
    """
    Create an image with EC2 Image Builder's CreateImage and (by default) wait until it is AVAILABLE.

    Request keyword arguments are the snake_case names of the CreateImage fields; nested dicts use the API's
    camelCase keys (snake_case keys are accepted too).  All of them are templated.  Literal values are
    validated when the DAG is parsed, rendered ones right after rendering, always before any API call.
    Client tokens, waiting, outputs and the remaining arguments: see :class:`ImageBuildOperator`.

    :param infrastructure_configuration_arn: ARN of the infrastructure configuration (required).
    :param image_recipe_arn: ARN of the image recipe (exactly one recipe is required).
    :param container_recipe_arn: ARN of the container recipe.
    :param distribution_configuration_arn: ARN of the distribution configuration.
    :param enhanced_image_metadata_enabled: collect OS version and package list.
    :param execution_role: name or ARN of the IAM role Image Builder uses for workflow actions.
    :param image_scanning_configuration: ``{"imageScanningEnabled": ..., "ecrConfiguration": {...}}``.
    :param image_tests_configuration: ``{"imageTestsEnabled": ..., "timeoutMinutes": 60..1440}``.
    :param tags: up to 50 tags of the image.
    :param workflows: workflow configurations (``workflowArn``, ``parameters``, ``parallelGroup``, ``onFailure``).
    :param logging_configuration: ``{"logGroupName": ...}``.
    """

    template_fields: Sequence[str] = aws_template_fields(*REQUEST_FIELDS.values(), "completion_queue_url")
    template_fields_renderers = {
        "image_scanning_configuration": "json",
        "image_tests_configuration": "json",
        "tags": "json",
        "workflows": "json",
        "logging_configuration": "json",
    }
    start_operation = "CreateImage"

    def __init__(
        self,
        *,
        infrastructure_configuration_arn: str,
        image_recipe_arn: str | None = None,
        container_recipe_arn: str | None = None,
        distribution_configuration_arn: str | None = None,
        enhanced_image_metadata_enabled: bool | None = None,
        execution_role: str | None = None,
        image_scanning_configuration: dict[str, Any] | None = None,
        image_tests_configuration: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        workflows: list[dict[str, Any]] | None = None,
        logging_configuration: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.infrastructure_configuration_arn = infrastructure_configuration_arn
        self.image_recipe_arn = image_recipe_arn
        self.container_recipe_arn = container_recipe_arn
        self.distribution_configuration_arn = distribution_configuration_arn
        self.enhanced_image_metadata_enabled = enhanced_image_metadata_enabled
        self.execution_role = execution_role
        self.image_scanning_configuration = image_scanning_configuration
        self.image_tests_configuration = image_tests_configuration
        self.tags = tags
        self.workflows = workflows
        self.logging_configuration = logging_configuration
        if container_recipe_arn is not None:  # a container image has no AMI: no AMI link
            self.operator_extra_links = (ImageBuilderImageLink(), ImageBuilderLogsLink())
        self._check_arguments()

    def _check_arguments(self) -> None:
        super()._check_arguments()
        configuration = self.image_scanning_configuration
        if self.max_finding_severity and is_literal(configuration) and not diagnostics.scanning_enabled(configuration):
            raise exceptions.ImageScanningNotEnabledError(
                diagnostics.scanning_required_message(
                    self.task_id, self.max_finding_severity, "image_scanning_configuration"
                )
            )

    def _build_content(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.max_finding_severity and not diagnostics.scanning_enabled(request.get("imageScanningConfiguration")):
            raise exceptions.ImageScanningNotEnabledError(
                diagnostics.scanning_required_message(
                    self.task_id, self.max_finding_severity, "image_scanning_configuration"
                )
            )
        return request

    def _request(self, literal_only: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name, attribute in REQUEST_FIELDS.items():
            value = getattr(self, attribute)
            if value is None:
                continue
            if not literal_only or is_literal(value):
                data[name] = value
            elif name in _PLACEHOLDERS:
                data[name] = _PLACEHOLDERS[name]
        templated = [name for name in _RECIPES if name in data and not is_literal(getattr(self, REQUEST_FIELDS[name]))]
        if literal_only and templated and all(name in data for name in _RECIPES):
            # Both recipes given, one templated: whether both end up set is known after rendering.
            del data[templated[0]]
        data.setdefault("clientToken", _PLACEHOLDERS["clientToken"])
        request = models.validate_request(data, source=self.task_id).to_api()
        if self.client_token is None:
            del request["clientToken"]
        return request

    def _start_build(self, request: dict[str, Any], token: str) -> str:
        response = self.hook.create_image(models.validate_request({**request, "clientToken": token}))
        return str(response["imageBuildVersionArn"])


class ImageBuilderStartPipelineExecutionOperator(ImageBuildOperator):
    """
    Start a run of an EC2 Image Builder image pipeline and (by default) wait until its image is AVAILABLE.

    The pipeline (recipe, infrastructure, distribution, tests, workflows) is defined elsewhere, typically by
    Terraform, CloudFormation or CDK; this operator is the manual start ``StartImagePipelineExecution`` with the
    same client tokens, waiting, outputs and XComs as :class:`ImageBuilderCreateImageOperator` (see
    :class:`ImageBuildOperator`): a retry, a worker crash, a clear or a backfill never starts a second execution
    for the same task instance; a retry after a FAILED or CANCELLED execution starts a new one.

    Before starting, the operator reads the pipeline (``imagebuilder:GetImagePipeline``): a pipeline that does
    not exist fails the task at once; so does a DISABLED one, unless ``start_disabled=True`` (the service itself
    runs a manual start of a disabled pipeline).

    :param image_pipeline_arn: ARN of the image pipeline (templated).
    :param tags: tags for the image this execution creates, merged by the service with the pipeline's image
        tags (templated; the same rules as CreateImage's tags).
    :param start_disabled: start the pipeline even when it is DISABLED (default False).
    """

    template_fields: Sequence[str] = aws_template_fields(
        "image_pipeline_arn", "tags", "client_token", "completion_queue_url"
    )
    template_fields_renderers = {"tags": "json"}
    start_operation = "StartImagePipelineExecution"

    def __init__(
        self,
        *,
        image_pipeline_arn: str,
        tags: dict[str, str] | None = None,
        start_disabled: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.image_pipeline_arn = image_pipeline_arn
        self.tags = tags
        self.start_disabled = start_disabled
        self._check_arguments()

    def _request(self, literal_only: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "imagePipelineArn": self.image_pipeline_arn,
            "tags": self.tags,
            "clientToken": self.client_token,
        }
        data = {name: value for name, value in data.items() if value is not None}
        if literal_only:
            data = {name: value for name, value in data.items() if is_literal(value)}
            data.setdefault("imagePipelineArn", _PLACEHOLDERS["imagePipelineArn"])
        request = self._validated({"clientToken": _PLACEHOLDERS["clientToken"], **data}).to_api()
        if self.client_token is None:
            del request["clientToken"]
        return request

    def _validated(self, data: dict[str, Any]) -> StartImagePipelineExecutionRequest:
        return models.validate(models.StartImagePipelineExecutionRequest, data, self.task_id)

    def _build_content(self, request: dict[str, Any]) -> dict[str, Any]:
        """Check the pipeline can run; the token covers what it builds, so a rerun after the pipeline's recipe or
        configurations changed builds anew instead of reusing the old image."""
        pipeline = self.hook.get_image_pipeline(request["imagePipelineArn"])
        status = pipeline.get("status", "ENABLED")
        if status == "DISABLED" and not self.start_disabled:
            raise exceptions.ImagePipelineDisabledError(
                f"Image pipeline {request['imagePipelineArn']} is DISABLED, so no execution was started. Enable it "
                "(UpdateImagePipeline with status ENABLED), or pass start_disabled=True to start it anyway (the "
                "service runs a manual start of a disabled pipeline)."
            )
        if self.max_finding_severity and not diagnostics.scanning_enabled(pipeline.get("imageScanningConfiguration")):
            raise exceptions.ImageScanningNotEnabledError(
                diagnostics.scanning_required_message(
                    self.task_id, self.max_finding_severity, f"image pipeline {request['imagePipelineArn']}"
                )
            )
        self.log.info("Image pipeline %s (%s) is %s", pipeline.get("name"), request["imagePipelineArn"], status)
        return {**request, "pipeline": {member: pipeline.get(member) for member in PIPELINE_BUILD_MEMBERS}}

    def _start_build(self, request: dict[str, Any], token: str) -> str:
        try:
            response = self.hook.start_image_pipeline_execution(self._validated({**request, "clientToken": token}))
        except exceptions.ImageBuilderApiError as error:
            if error.code != "ResourceInUseException":
                raise
            fields = error.fields() | {
                "hint": f"Image pipeline {request['imagePipelineArn']} is in use (an execution may be starting or "
                "the pipeline is being updated); the task may succeed on a retry."
            }
            raise exceptions.ImageBuilderApiError(**fields) from error
        return str(response["imageBuildVersionArn"])
