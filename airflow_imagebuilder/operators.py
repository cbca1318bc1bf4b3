"""ImageBuilderCreateImageOperator: CreateImage as an idempotent DAG step."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import conf

from airflow_imagebuilder.exceptions import ImageBuilderError, ImageBuildFailedError
from airflow_imagebuilder.hooks import (
    FAILURE_STATES,
    SUCCESS_STATES,
    ImageBuilderHook,
    ImageState,
    failure_message,
    image_outputs,
    push_image_outputs,
)
from airflow_imagebuilder.links import ImageBuilderImageLink
from airflow_imagebuilder.models import REQUEST_FIELDS, validate_request
from airflow_imagebuilder.token import derive_client_token

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: Generations tried before giving up: each one is a build that ended in a failure state (or, with
#: ``force_rebuild``, an AVAILABLE one), so reaching this many means something is wrong with the recipe.
MAX_GENERATIONS = 100
#: Stands in for values that are only known after rendering, so literal fields can be checked at parse time.
_PLACEHOLDERS: dict[str, str] = {
    "clientToken": "parse-time-check",
    "infrastructureConfigurationArn": "arn:aws:imagebuilder:us-east-1:123456789012:infrastructure-configuration/x",
    "imageRecipeArn": "arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/x/1.0.0",
    "containerRecipeArn": "arn:aws:imagebuilder:us-east-1:123456789012:container-recipe/x/1.0.0",
}


def is_literal(value: Any) -> bool:
    """True when a value has no Jinja template and no XComArg (or other resolvable) inside."""
    if isinstance(value, str):
        return "{{" not in value and "{%" not in value
    if isinstance(value, dict):
        return all(is_literal(key) and is_literal(item) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return all(is_literal(item) for item in value)
    return not hasattr(value, "resolve")


class ImageBuilderCreateImageOperator(AwsBaseOperator[ImageBuilderHook]):
    """
    Create an image with EC2 Image Builder and (by default) wait until it is AVAILABLE.

    Request keyword arguments are the snake_case names of the CreateImage fields; nested dicts use the API's
    camelCase keys (snake_case keys are accepted too).  All of them are templated.  Literal values are
    validated when the DAG is parsed, rendered ones right after rendering, always before any API call.

    Unless ``client_token`` is given, the client token is derived from the task instance and the rendered
    request, with a generation counter: retries and reruns follow the build already in flight, reuse an image
    already AVAILABLE (unless ``force_rebuild``), and start a new build only after a FAILED or CANCELLED one.

    Returns the image build version ARN.  XCom keys pushed: ``client_token``; once AVAILABLE, ``amis``
    (``[{"region", "image", "name", "accountId"}]``), ``ami_ids`` (``{region: ami id}``) and
    ``container_image_uris``.

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
    :param client_token: use this client token verbatim for every try instead of deriving one.
    :param force_rebuild: build anew even when an identical request already produced an AVAILABLE image.
    :param wait_for_completion: wait until the image is AVAILABLE (default True).
    :param waiter_delay: seconds between two status polls (default 30).
    :param waiter_max_attempts: polls before giving up and cancelling the build (default 1440: 12 hours).
    :param deferrable: wait in the triggerer instead of the worker (default ``[operators] default_deferrable``).
    :param cancel_on_kill: cancel the build when the task is killed, marked failed or times out (default True).
    :param api_retry: fields of :class:`~airflow_imagebuilder.hooks.RetryPolicy` for throttled/5xx API calls.
    :param aws_conn_id: the Airflow connection used for AWS credentials.
    :param region_name: AWS region; defaults to the connection's.
    :param verify: whether or not to verify SSL certificates.
    :param botocore_config: configuration dictionary for the botocore client.
    """

    aws_hook_class = ImageBuilderHook
    template_fields: Sequence[str] = aws_template_fields(*REQUEST_FIELDS.values())
    template_fields_renderers = {
        "image_scanning_configuration": "json",
        "image_tests_configuration": "json",
        "tags": "json",
        "workflows": "json",
        "logging_configuration": "json",
    }
    operator_extra_links = (ImageBuilderImageLink(),)
    ui_color = "#ff9900"

    # Instance attributes, stored by __init__ in one update (see there).
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
    client_token: str | None
    force_rebuild: bool
    wait_for_completion: bool
    waiter_delay: float
    waiter_max_attempts: int
    deferrable: bool
    cancel_on_kill: bool
    api_retry: dict[str, Any] | None
    _in_flight_arn: str | None

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
        client_token: str | None = None,
        force_rebuild: bool = False,
        wait_for_completion: bool = True,
        waiter_delay: float = 30,
        waiter_max_attempts: int = 1440,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        cancel_on_kill: bool = True,
        api_retry: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # One dict update instead of 20 assignments: BaseOperator.__setattr__ costs a few microseconds per
        # attribute (converters, init-kwargs tracking), which showed in DAG parse time at 100 tasks per file.
        # Nothing in it applies here: no converters for these names, the init kwargs already hold these values,
        # and XComArg dependencies of template fields are collected after __init__.
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
            _in_flight_arn=None,
        )
        if force_rebuild and client_token is not None:
            raise ValueError(
                f"{self.task_id}: force_rebuild=True needs a derived client token; a fixed client_token always "
                "names the same build. Drop client_token or force_rebuild."
            )
        self._validate_literal_fields()

    @property
    def _hook_parameters(self) -> dict[str, Any]:
        return {**super()._hook_parameters, "api_retry": self.api_retry}

    # ------------------------------------------------------------------------------------ the request
    def _request_values(self) -> dict[str, Any]:
        """Current values of the request fields, by API name (None means "not set")."""
        return {api_name: getattr(self, attribute) for api_name, attribute in REQUEST_FIELDS.items()}

    def _validate_literal_fields(self) -> None:
        """Check literal values at DAG parse time; templated ones are checked after rendering."""
        values = self._request_values()
        data: dict[str, Any] = {}
        for name, value in values.items():
            if value is None:
                continue
            if is_literal(value):
                data[name] = value
            elif name in _PLACEHOLDERS:
                data[name] = _PLACEHOLDERS[name]
        if (
            "imageRecipeArn" in data
            and "containerRecipeArn" in data
            and not (is_literal(values["imageRecipeArn"]) and is_literal(values["containerRecipeArn"]))
        ):
            data.pop("imageRecipeArn" if not is_literal(values["imageRecipeArn"]) else "containerRecipeArn")
        data.setdefault("clientToken", _PLACEHOLDERS["clientToken"])
        validate_request(data, source=f"CreateImage request of task {self.task_id!r}")

    def _rendered_request(self) -> dict[str, Any]:
        """The rendered request without client token, validated and normalised to API form."""
        data = {name: value for name, value in self._request_values().items() if value is not None}
        data.setdefault("clientToken", _PLACEHOLDERS["clientToken"])
        request = validate_request(data, source=f"CreateImage request of task {self.task_id!r}").to_api()
        if self.client_token is None:
            del request["clientToken"]
        return request

    # ------------------------------------------------------------------------------------ execution
    def execute(self, context: Context) -> str:
        request = self._rendered_request()
        arn, token, image = self._start_or_find_build(context, request)
        context["ti"].xcom_push(key="client_token", value=token)
        ImageBuilderImageLink.record(context, self, arn)
        if image is not None and ImageState.of(image).status in SUCCESS_STATES:  # reused
            push_image_outputs(context, arn, image_outputs(image), self.log)
            return arn
        if not self.wait_for_completion:
            return arn
        if self.deferrable:
            from airflow_imagebuilder.triggers import ImageBuilderImageTrigger  # only when deferring: light parse

            self.defer(
                trigger=ImageBuilderImageTrigger(
                    image_build_version_arn=arn,
                    waiter_delay=self.waiter_delay,
                    waiter_max_attempts=self.waiter_max_attempts,
                    aws_conn_id=self.aws_conn_id,
                    region_name=self.region_name,
                    verify=self.verify,
                    botocore_config=self.botocore_config,
                    cancel_on_kill=self.cancel_on_kill,
                    api_retry=self.api_retry,
                ),
                method_name="execute_complete",
                # The trigger times out (and cancels) first; this only bounds a trigger that never fires.
                timeout=timedelta(seconds=self.waiter_delay * self.waiter_max_attempts + 10 * 60),
            )
        self._in_flight_arn = arn
        image = self.hook.wait_for_image(
            arn, waiter_delay=self.waiter_delay, waiter_max_attempts=self.waiter_max_attempts, known_image=image
        )
        self._in_flight_arn = None
        push_image_outputs(context, arn, image_outputs(image), self.log)
        return arn

    def _start_or_find_build(self, context: Context, request: dict[str, Any]) -> tuple[str, str, dict[str, Any] | None]:
        """Send CreateImage with the token of each generation until one names a build worth following.

        Returns (ARN, client token, the image as just read: AVAILABLE when reused, None while not yet visible).
        """
        ti = context["ti"]
        identity = {"dag_id": ti.dag_id, "task_id": ti.task_id, "run_id": ti.run_id, "map_index": ti.map_index}
        for generation in range(MAX_GENERATIONS):
            token = self.client_token or derive_client_token(identity, request, generation)
            self.log.info("CreateImage with client token %s (generation %d)", token, generation)
            response = self.hook.create_image(validate_request({**request, "clientToken": token}))
            arn = response["imageBuildVersionArn"]
            image = self.hook.find_image(arn)
            state = ImageState.of(image) if image is not None else ImageState("PENDING")
            if state.status in FAILURE_STATES:
                if self.client_token is not None:
                    raise ImageBuildFailedError(
                        failure_message(arn, state) + f". The fixed client_token {token!r} always names this "
                        "build; omit client_token (or change it) to build again.",
                        arn,
                        state.status,
                        state.reason,
                    )
                self.log.info("%s; starting a new build with the next client token", failure_message(arn, state))
                continue
            if state.status in SUCCESS_STATES:
                if self.force_rebuild:
                    self.log.info("Image %s is AVAILABLE; force_rebuild=True, so building anew", arn)
                    continue
                self.log.info(
                    "Reusing image %s: an identical request of this task instance already built it and it is "
                    "AVAILABLE (client token %s). Pass force_rebuild=True to build anew.",
                    arn,
                    token,
                )
                return arn, token, image
            self.log.info("Following image %s (status %s)", arn, state.status)
            return arn, token, image
        raise ImageBuilderError(
            f"{MAX_GENERATIONS} builds of this request (client tokens of generations 0-{MAX_GENERATIONS - 1}) "
            "ended without an image to use; giving up"
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> str:
        from airflow_imagebuilder.triggers import resolve_event

        outputs = resolve_event(event)
        arn = str(event["image_build_version_arn"])  # type: ignore[index]  # resolve_event checked it
        push_image_outputs(context, arn, outputs, self.log)
        return arn

    def on_kill(self) -> None:
        """Cancel the build this task is waiting for."""
        if self.cancel_on_kill and self._in_flight_arn:
            self.hook.cancel_image_creation(self._in_flight_arn)
