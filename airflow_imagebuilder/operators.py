"""Operators that start an image build as an idempotent DAG step and (by default) wait for it.

:class:`ImageBuildOperator` holds what every such operator shares: the client token walk, the wait (sync or
deferred), the outputs, cancel on kill.  A subclass says which request it renders and which call starts the build;
its ``__init__`` lists the arguments every image build operator takes, stores them with the request fields in one
``vars(self).update(...)`` and calls ``_check_arguments`` (see :class:`ImageBuildOperator`), which ``partial()`` /
``expand()`` also run on each mapped task's literal arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import conf

from airflow_imagebuilder.fields import (
    PLAIN_FIELD_RULES,
    REQUEST_FIELDS,
    check_pipeline_request,
    check_request,
    plain_string,
    plain_tags,
)
from airflow_imagebuilder.hooks import ON_KILL_CANCEL_SECONDS, ImageBuilderHook
from airflow_imagebuilder.links import ImageBuilderAmiLink, ImageBuilderImageLink, ImageBuilderLogsLink
from airflow_imagebuilder.mapping import MAPPED, check_shared_arguments, checked_partial
from airflow_imagebuilder.states import (
    DEFAULT_NOT_FOUND_GRACE,
    DEFAULT_SAFETY_POLL_INTERVAL,
    FAILURE_STATES,
    SUCCESS_STATES,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk.definitions.mappedoperator import OperatorPartial

    from airflow_imagebuilder import diagnostics, exceptions, lineage, models, outputs, triggers, waiting
    from airflow_imagebuilder import token as client_tokens
    from airflow_imagebuilder.models import StartImagePipelineExecutionRequest
else:  # execution machinery, loaded on first use (see lazy.py)
    from airflow_imagebuilder.lazy import (
        client_tokens,
        diagnostics,
        exceptions,
        lineage,
        models,
        outputs,
        triggers,
        waiting,
    )

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


#: (attribute, plain rule or None, names a recipe) of each CreateImage field but tags, for the one-pass check.
_PLAIN_ATTRIBUTES = tuple(
    (attribute, PLAIN_FIELD_RULES.get(name), name in _RECIPES)
    for name, attribute in REQUEST_FIELDS.items()
    if name != "tags"
)


def _plainly_valid_literals(attributes: dict[str, Any]) -> bool:
    """The parse-time check of the shape most DAG files write, in one pass over the operator's attributes: True
    when each request field is unset, a templated string (checked after rendering) or a plain value its rule
    accepts, the infrastructure is set, exactly one recipe is, and the tags are templated or plain.  False means
    "build the literal request and let check_request decide", not "invalid"."""
    recipes = 0
    for attribute, rule, recipe in _PLAIN_ATTRIBUTES:
        value = attributes[attribute]
        if value is None:
            continue
        if rule is bool:
            if type(value) is not bool:
                return False
        elif (
            rule is None
            or type(value) is not str
            or (("{{" not in value and "{%" not in value) and not plain_string(value, rule))
        ):
            return False
        recipes += recipe
    tags = attributes["tags"]
    return (
        recipes == 1
        and attributes["infrastructure_configuration_arn"] is not None
        and (tags is None or not is_literal(tags) or plain_tags(tags))
    )


#: Defaults of the arguments every image build operator takes (see :class:`ImageBuildOperator`).
DEFAULT_WAITER_DELAY = 30
DEFAULT_WAITER_MAX_ATTEMPTS = 1440  # 12 hours at the default delay
DEFAULT_DEFERRABLE = conf.getboolean("operators", "default_deferrable", fallback=False)


def client_token_namespace() -> str:
    """``[imagebuilder] client_token_namespace``: enters every derived token (empty by default)."""
    return conf.get("imagebuilder", "client_token_namespace", fallback="") or ""


class ImageBuildOperator(AwsBaseOperator[ImageBuilderHook]):
    """
    Base of the operators that start an image build: client tokens, waiting, outputs and cancel on kill.

    Unless ``client_token`` is given, the client token is derived from the task instance, the rendered request
    and ``[imagebuilder] client_token_namespace``, with a generation counter: retries and reruns follow the
    build already in flight, reuse an image already AVAILABLE, and start a new build only after a FAILED or
    CANCELLED one.  With ``force_rebuild=True`` the tokens also carry the first try number of the current series
    of tries (a clear starts a new series, a retry does not): a rerun builds anew, while a retry follows or
    reuses the build its own series already started.

    Returns the image build version ARN.  XCom keys pushed: ``client_token``; once AVAILABLE, ``amis``
    (``[{"region", "image", "name", "accountId"}]``), ``ami_ids`` (``{region: ami id}``) and
    ``container_image_uris``.

    :param client_token: use this client token verbatim for every try instead of deriving one.
    :param force_rebuild: build anew even when an identical request already produced an AVAILABLE image.
    :param wait_for_completion: wait until the image is AVAILABLE (default True).
    :param waiter_delay: seconds between two status polls (default 30).
    :param waiter_max_attempts: polls before giving up (default 1440: 12 hours).
    :param deferrable: wait in the triggerer instead of the worker (default ``[operators] default_deferrable``).
    :param cancel_on_kill: cancel the build when the task is killed, marked failed or its wait times out
        (default True).
    :param api_retry: fields of :class:`~airflow_imagebuilder.retry.RetryPolicy` for throttled/5xx API calls.
    :param max_finding_severity: the most severe image scan finding allowed (``INFORMATIONAL``, ``LOW``,
        ``MEDIUM``, ``HIGH`` or ``CRITICAL``); once AVAILABLE, the task reads the image's scan findings, pushes
        ``scan_findings_counts`` and fails without retries, naming the worst, past it.  Needs image scanning
        enabled.  Default None: no gate.
    :param completion_queue_url: an SQS queue receiving Image Builder's state change events; a deferred wait
        then learns the outcome from it instead of polling (templated; see
        :class:`~airflow_imagebuilder.triggers.ImageBuilderImageTrigger`).  Default None: polling.
    :param safety_poll_interval: seconds between the safety GetImage calls of an event-driven wait (600).
    :param aws_conn_id: the Airflow connection used for AWS credentials.
    :param region_name: AWS region; defaults to the connection's.
    :param verify: whether or not to verify SSL certificates.
    :param botocore_config: configuration dictionary for the botocore client.
    """

    aws_hook_class = ImageBuilderHook
    operator_extra_links = (ImageBuilderImageLink(), ImageBuilderLogsLink(), ImageBuilderAmiLink())
    ui_color = "#ff9900"
    #: The API operation that starts a build (for logs and messages).
    start_operation = ""

    # Instance attributes, stored by the subclass's __init__ in one update (see _check_arguments).
    client_token: str | None
    force_rebuild: bool
    wait_for_completion: bool
    waiter_delay: float
    waiter_max_attempts: int
    deferrable: bool
    cancel_on_kill: bool
    api_retry: dict[str, Any] | None
    max_finding_severity: str | None
    completion_queue_url: str | None
    safety_poll_interval: float
    _in_flight_arn: str | None

    # This class has no __init__ of its own: Airflow wraps every operator __init__ in its default-args layer,
    # which copies the DAG's params and merges default_args on every call, about 6 microseconds (5% of
    # constructing the operator) per layer and per task.  Each subclass's __init__ lists the keyword arguments
    # documented above (so default_args and partial()/expand() see them), stores them all with one
    # ``vars(self).update(...)`` and calls _check_arguments.  One dict update instead of an assignment per
    # argument: BaseOperator.__setattr__ costs a few microseconds per attribute (converter lookup, init-kwargs
    # tracking), about 8% of constructing this operator.  Nothing it does applies here: no converters for these
    # names, the init kwargs already hold these values, and XComArg dependencies of template fields are collected
    # after __init__.
    @classmethod
    def partial(cls, **kwargs: Any) -> OperatorPartial:  # type: ignore[override]
        """``BaseOperator.partial()``, whose ``expand()`` / ``expand_kwargs()`` check the literal arguments of the
        mapped tasks when the DAG is parsed, as ``__init__`` does for a task that is not mapped."""
        own = (ImageBuilderCreateImageOperator.__init__, ImageBuilderStartPipelineExecutionOperator.__init__)
        return checked_partial(cls, super().partial(**kwargs), own)

    @classmethod
    def _check_arguments(cls, task_id: str, values: dict[str, Any], where: str = "") -> None:
        """Check the arguments of ``__init__`` (``values``, by name) as far as they are known: a :data:`MAPPED`
        one only when the task runs.  ``where`` follows the task id in messages (which element of an expansion)."""
        check_shared_arguments(task_id, values, where)
        wait = values["wait_for_completion"]
        if values["max_finding_severity"] not in (None, MAPPED) and wait is not MAPPED and not wait:
            raise ValueError(
                f"{task_id}{where}: max_finding_severity needs wait_for_completion=True (the gate judges the "
                "image once it is AVAILABLE); or gate with ImageBuilderImageSensor(max_finding_severity=...)"
            )
        force_rebuild, client_token = values["force_rebuild"], values["client_token"]
        if force_rebuild is not MAPPED and force_rebuild and client_token not in (None, MAPPED):
            raise ValueError(
                f"{task_id}{where}: force_rebuild=True needs a derived client token; a fixed client_token always "
                "names the same build. Drop client_token or force_rebuild."
            )

    @property
    def _hook_parameters(self) -> dict[str, Any]:
        return {**super()._hook_parameters, "api_retry": self.api_retry}

    # ------------------------------------------------------------------------------- for subclasses
    def _rendered_request(self) -> dict[str, Any]:
        """The rendered request in API form, validated, without ``clientToken`` unless the user gave one."""
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
        request = self._rendered_request()
        arn, token, image = self._start_or_find_build(context, request, self._build_content(request))
        context["ti"].xcom_push(key="client_token", value=token)
        ImageBuilderImageLink.record(context, self, arn)
        ImageBuilderLogsLink.record(
            context, self, arn, image or {"loggingConfiguration": request.get("loggingConfiguration")}
        )
        if image is not None and waiting.ImageState.of(image).status in SUCCESS_STATES:  # reused
            ImageBuilderAmiLink.record(context, self, arn, waiting.image_outputs(image)["amis"])
            outputs.finish_image(
                context, self.hook, arn, waiting.image_outputs(image), self.max_finding_severity, image
            )
            return arn
        if not self.wait_for_completion:
            return arn
        if self.deferrable:
            self.defer(
                trigger=triggers.ImageBuilderImageTrigger(
                    image_build_version_arn=arn,
                    waiter_delay=self.waiter_delay,
                    waiter_max_attempts=self.waiter_max_attempts,
                    aws_conn_id=self.aws_conn_id,
                    region_name=self.region_name,
                    verify=self.verify,
                    botocore_config=self.botocore_config,
                    cancel_on_kill=self.cancel_on_kill,
                    api_retry=self.api_retry,
                    completion_queue_url=self.completion_queue_url,
                    safety_poll_interval=self.safety_poll_interval,
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
        outputs.finish_image(context, self.hook, arn, waiting.image_outputs(image), self.max_finding_severity, image)
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

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> str:
        image_outputs = triggers.resolve_event(event, self.hook)
        arn = str(event["image_build_version_arn"])  # type: ignore[index]  # resolve_event checked it
        ImageBuilderAmiLink.record(context, self, arn, image_outputs.get("amis", []))
        outputs.finish_image(context, self.hook, arn, image_outputs, self.max_finding_severity)
        return arn

    def get_openlineage_facets_on_start(self) -> OperatorLineage:
        """OpenLineage inputs: the recipe and configurations, or the pipeline (:mod:`airflow_imagebuilder.lineage`)."""
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

    # Instance attributes, stored by __init__ in one update (see ImageBuildOperator._check_arguments).
    infrastructure_configuration_arn: str
    image_recipe_arn: str | None
    container_recipe_arn: str | None
    distribution_configuration_arn: str | None
    enhanced_image_metadata_enabled: bool | None
    execution_role: str | None
    image_scanning_configuration: dict[str, Any] | None
    image_tests_configuration: dict[str, Any] | None
    tags: dict[str, str] | None
    workflows: list[dict[str, Any]] | None
    logging_configuration: dict[str, Any] | None

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
        # The arguments of every image build operator (see ImageBuildOperator).
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
        vars(self).update(
            infrastructure_configuration_arn=infrastructure_configuration_arn,
            image_recipe_arn=image_recipe_arn,
            container_recipe_arn=container_recipe_arn,
            distribution_configuration_arn=distribution_configuration_arn,
            enhanced_image_metadata_enabled=enhanced_image_metadata_enabled,
            execution_role=execution_role,
            image_scanning_configuration=image_scanning_configuration,
            image_tests_configuration=image_tests_configuration,
            tags=tags,
            workflows=workflows,
            logging_configuration=logging_configuration,
            client_token=client_token,
            force_rebuild=force_rebuild,
            wait_for_completion=wait_for_completion,
            waiter_delay=waiter_delay,
            waiter_max_attempts=waiter_max_attempts,
            deferrable=deferrable,
            cancel_on_kill=cancel_on_kill,
            api_retry=api_retry,
            max_finding_severity=max_finding_severity,
            completion_queue_url=completion_queue_url,
            safety_poll_interval=safety_poll_interval,
            _in_flight_arn=None,
        )
        self._check_arguments(self.task_id, vars(self))

    @classmethod
    def _check_arguments(cls, task_id: str, values: dict[str, Any], where: str = "") -> None:
        super()._check_arguments(task_id, values, where)
        cls._validate_literal_fields(values, f"CreateImage request of task {task_id!r}{where}")
        max_finding_severity = values["max_finding_severity"]
        if max_finding_severity and max_finding_severity is not MAPPED:
            configuration = values["image_scanning_configuration"]
            if is_literal(configuration) and not diagnostics.scanning_enabled(configuration):
                raise exceptions.ImageScanningNotEnabledError(
                    diagnostics.scanning_required_message(
                        task_id + where, max_finding_severity, "image_scanning_configuration"
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

    def _request_values(self) -> dict[str, Any]:
        """Current values of the request fields, by API name (None means "not set")."""
        return {api_name: getattr(self, attribute) for api_name, attribute in REQUEST_FIELDS.items()}

    @staticmethod
    def _validate_literal_fields(attributes: dict[str, Any], source: str) -> None:
        """Check literal values at DAG parse time; templated (and mapped) ones are checked after rendering."""
        data: dict[str, Any] = {}
        templated_recipe = None
        if _plainly_valid_literals(attributes):
            return
        for name, attribute in REQUEST_FIELDS.items():
            value = attributes[attribute]
            if value is None:
                continue
            if is_literal(value):
                data[name] = value
            elif name in _PLACEHOLDERS:
                data[name] = _PLACEHOLDERS[name]
                if name in _RECIPES and templated_recipe is None:
                    templated_recipe = name
        if templated_recipe is not None and "imageRecipeArn" in data and "containerRecipeArn" in data:
            # Both recipes given, one templated: whether both end up set is known after rendering.
            del data[templated_recipe]
        data.setdefault("clientToken", _PLACEHOLDERS["clientToken"])
        check_request(data, source=source)

    def _rendered_request(self) -> dict[str, Any]:
        data = {name: value for name, value in self._request_values().items() if value is not None}
        data.setdefault("clientToken", _PLACEHOLDERS["clientToken"])
        request = models.validate_request(data, source=f"CreateImage request of task {self.task_id!r}").to_api()
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

    image_pipeline_arn: str
    tags: dict[str, str] | None
    start_disabled: bool

    def __init__(
        self,
        *,
        image_pipeline_arn: str,
        tags: dict[str, str] | None = None,
        start_disabled: bool = False,
        # The arguments of every image build operator (see ImageBuildOperator).
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
        vars(self).update(
            image_pipeline_arn=image_pipeline_arn,
            tags=tags,
            start_disabled=start_disabled,
            client_token=client_token,
            force_rebuild=force_rebuild,
            wait_for_completion=wait_for_completion,
            waiter_delay=waiter_delay,
            waiter_max_attempts=waiter_max_attempts,
            deferrable=deferrable,
            cancel_on_kill=cancel_on_kill,
            api_retry=api_retry,
            max_finding_severity=max_finding_severity,
            completion_queue_url=completion_queue_url,
            safety_poll_interval=safety_poll_interval,
            _in_flight_arn=None,
        )
        self._check_arguments(self.task_id, vars(self))

    @classmethod
    def _check_arguments(cls, task_id: str, values: dict[str, Any], where: str = "") -> None:
        super()._check_arguments(task_id, values, where)
        request = {
            "imagePipelineArn": values["image_pipeline_arn"],
            "tags": values["tags"],
            "clientToken": values["client_token"],
        }
        literal = {name: value for name, value in request.items() if value is not None and is_literal(value)}
        literal.setdefault("imagePipelineArn", _PLACEHOLDERS["imagePipelineArn"])
        literal.setdefault("clientToken", _PLACEHOLDERS["clientToken"])
        check_pipeline_request(literal, f"StartImagePipelineExecution request of task {task_id!r}{where}")

    @property
    def _source(self) -> str:
        return f"StartImagePipelineExecution request of task {self.task_id!r}"

    def _validated(self, data: dict[str, Any]) -> StartImagePipelineExecutionRequest:
        return models.validate(models.StartImagePipelineExecutionRequest, data, self._source)

    def _rendered_request(self) -> dict[str, Any]:
        data = {"imagePipelineArn": self.image_pipeline_arn, "tags": self.tags, "clientToken": self.client_token}
        data = {name: value for name, value in data.items() if value is not None}
        request = self._validated({"clientToken": _PLACEHOLDERS["clientToken"], **data}).to_api()
        if self.client_token is None:
            del request["clientToken"]
        return request

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
