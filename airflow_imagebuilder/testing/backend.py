"""The operations of the emulated service: request validation, client tokens, resource rules and the lifecycle.

:meth:`ImageBuilderBackend.call` takes an operation name, the caller's region and the decoded request and returns
the response body, or raises the :class:`~.errors.ServiceError` the service would answer with.  Nothing here knows
about HTTP, faults or the journal (see ``service.py`` and ``server.py``).

Two modes.  Strict: a request naming a recipe, configuration or pipeline that was not created answers as the
service does for a missing resource.  Lenient (the default): a recipe or configuration named by an image or
pipeline request is registered on first use, as if created with defaults; names the service could never have
created (fewer than 3 characters) are still missing.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import random
import re
import threading
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from airflow_imagebuilder._decisions.states import IN_PROGRESS_STATES
from airflow_imagebuilder.testing.clock import ManualClock, RealClock, Seconds, seconds_range
from airflow_imagebuilder.testing.errors import NotImplementedByEmulator, ServiceError, invalid_parameter, not_found
from airflow_imagebuilder.testing.findings import planned_findings
from airflow_imagebuilder.testing.resources import (
    AMI_NAME_TAG,
    ARN,
    DEFAULT_COMPONENT,
    DEFAULT_INSTANCE_PROFILE,
    DEFAULT_PARENT_IMAGE,
    PHASES,
    RESOURCE_NAME,
    Build,
    DistributionConfiguration,
    ImagePipeline,
    InfrastructureConfiguration,
    PlannedFailure,
    Recipe,
    Resource,
    arn_name,
    arn_versions,
    members,
    version_key,
    version_matches,
    version_problem,
    version_references,
)
from airflow_imagebuilder.testing.shapes import aws_regions, check_shape, operation_shapes
from airflow_imagebuilder.testing.workflows import (
    MANAGED_WORKFLOWS,
    PHASE_WORKFLOW,
    WorkflowRun,
    clip,
    phase_steps,
    step_execution_id,
    workflow_execution_id,
)

#: Outputs a distribution must name at least one of (the service refuses a region without outputs).
DISTRIBUTION_OUTPUTS = (
    "amiDistributionConfiguration",
    "containerDistributionConfiguration",
    "launchTemplateConfigurations",
    "s3ExportConfiguration",
    "fastLaunchConfigurations",
    "ssmParameterConfigurations",
    "licenseConfigurationArns",
)
#: What an image recipe's ``parentImage`` may be (the model's ``CreateImageRecipeRequest.parentImage``): an AMI ID,
#: an Image Builder image ARN, an SSM parameter prefixed by ``ssm:``, or an AWS Marketplace product ID.
PARENT_IMAGE = re.compile(
    r"^(?:ami-[0-9a-f]{8}(?:[0-9a-f]{9})?|arn:aws[^:]*:imagebuilder:[^:]+:(?:[0-9]{12}|aws(?:-[a-z-]+)?):image/\S+"
    r"|ssm:\S+|prod-[a-z0-9]+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\Z"
)
RESOURCE_LABELS = {
    "image-recipe": "ImageRecipe",
    "container-recipe": "ContainerRecipe",
    "infrastructure-configuration": "InfrastructureConfiguration",
    "distribution-configuration": "DistributionConfiguration",
    "image-pipeline": "ImagePipeline",
}


def partition_of(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


#: Seconds a held build stays PENDING before :meth:`ImageBuilderBackend.release_builds` (practically forever).
HELD_SECONDS = 1e9


def phase_durations(phase_seconds: Seconds | Mapping[str, Seconds]) -> dict[str, tuple[float, float]]:
    """Seconds per phase as ``(low, high)`` ranges (equal bounds for a fixed duration).

    One value for every phase, or a mapping per phase (phases not named last 1 second).  A ``[low, high]`` range
    gives each new build its own duration, drawn uniformly.  Unless CREATING is given, it shares PENDING's time
    with PENDING (half each).
    """
    if isinstance(phase_seconds, Mapping):
        unknown = set(phase_seconds) - set(PHASES)
        if unknown:
            raise ValueError(f"phase_seconds: unknown phases {sorted(unknown)}; phases are {PHASES}")
        durations = {phase: seconds_range(f"phase_seconds[{phase}]", phase_seconds.get(phase, 1.0)) for phase in PHASES}
        explicit_creating = "CREATING" in phase_seconds
    else:
        durations = dict.fromkeys(PHASES, seconds_range("phase_seconds[*]", phase_seconds))
        explicit_creating = False
    if not explicit_creating:
        low, high = durations["PENDING"]
        durations["PENDING"] = durations["CREATING"] = (low / 2, high / 2)
    return durations


class ImageBuilderBackend:
    """Everything the emulated service remembers.  Thread-safe: operations and controls take :attr:`lock`.

    :param clock: ``RealClock()`` (default) or a :class:`ManualClock` the test advances.
    :param phase_seconds: duration of each lifecycle phase: one number for all, or a mapping per phase name.
    :param account_id: the account the emulated resources belong to.
    :param visibility_delay: seconds after a build starts during which GetImage answers ResourceNotFoundException
        (the service's eventual consistency).
    :param strict: require the resources a request names to exist (see the module docstring).
    :param seed: seed of the random source that draws phase durations given as ranges.
    :param advance_on_poll: each GetImage of a build in progress, once answered, moves the clock to the end of
        the build's current phase, so the next GetImage sees the next phase: builds move as they are polled, however
        long their pollers sleep.  Needs a :class:`ManualClock` (one is made when ``clock`` is None).
    """

    def __init__(
        self,
        *,
        clock: RealClock | ManualClock | None = None,
        phase_seconds: Seconds | Mapping[str, Seconds] = 1.0,
        account_id: str = "123456789012",
        visibility_delay: float = 0.0,
        strict: bool = False,
        seed: int = 0,
        advance_on_poll: bool = False,
    ) -> None:
        if advance_on_poll and isinstance(clock, RealClock):
            raise ValueError("advance_on_poll moves the clock: give a ManualClock, or no clock")
        self.clock = clock or (ManualClock() if advance_on_poll else RealClock())
        self.advance_on_poll = advance_on_poll
        self.account_id = account_id
        self.visibility_delay = visibility_delay
        self.strict = strict
        self.lock = threading.RLock()
        self.resources: dict[str, Resource] = {}
        self.builds: dict[str, Build] = {}
        self._phase_seconds = phase_durations(phase_seconds)
        self._random = random.Random(seed)
        self._holding = False
        self._held: list[Build] = []
        self._build_numbers: dict[tuple[str, str, str], int] = {}
        self._tokens: dict[tuple[str, str, str], tuple[str, dict[str, Any]]] = {}
        self._planned_failures: list[PlannedFailure] = []
        self._planned_findings: list[list[dict[str, Any]]] = []
        self._workflow_builds: dict[str, Build] = {}
        self._step_workflows: dict[str, tuple[Build, str]] = {}
        self._operations: dict[str, Callable[[str, dict[str, Any]], dict[str, Any]]] = {
            "CreateImage": self.create_image,
            "GetImage": self.get_image,
            "CancelImageCreation": self.cancel_image_creation,
            "ListImageBuildVersions": self.list_image_build_versions,
            "CreateImageRecipe": partial(self._create_recipe, kind="image"),
            "GetImageRecipe": partial(self._get, key="imageRecipe"),
            "ListImageRecipes": partial(self._list_recipes, kind="image"),
            "DeleteImageRecipe": partial(self._delete, arn_member="imageRecipeArn"),
            "CreateContainerRecipe": partial(self._create_recipe, kind="container"),
            "GetContainerRecipe": partial(self._get, key="containerRecipe"),
            "ListContainerRecipes": partial(self._list_recipes, kind="container"),
            "DeleteContainerRecipe": partial(self._delete, arn_member="containerRecipeArn"),
            "CreateInfrastructureConfiguration": self.create_infrastructure_configuration,
            "GetInfrastructureConfiguration": partial(self._get, key="infrastructureConfiguration"),
            "ListInfrastructureConfigurations": partial(
                self._list, kind=InfrastructureConfiguration, key="infrastructureConfigurationSummaryList"
            ),
            "DeleteInfrastructureConfiguration": partial(self._delete, arn_member="infrastructureConfigurationArn"),
            "CreateDistributionConfiguration": self.create_distribution_configuration,
            "GetDistributionConfiguration": partial(self._get, key="distributionConfiguration"),
            "ListDistributionConfigurations": partial(
                self._list, kind=DistributionConfiguration, key="distributionConfigurationSummaryList"
            ),
            "DeleteDistributionConfiguration": partial(self._delete, arn_member="distributionConfigurationArn"),
            "CreateImagePipeline": self.create_image_pipeline,
            "GetImagePipeline": self.get_image_pipeline,
            "ListImagePipelines": self.list_image_pipelines,
            "UpdateImagePipeline": self.update_image_pipeline,
            "DeleteImagePipeline": partial(self._delete, arn_member="imagePipelineArn"),
            "StartImagePipelineExecution": self.start_image_pipeline_execution,
            "ListImagePipelineImages": self.list_image_pipeline_images,
            "ListWorkflowExecutions": self.list_workflow_executions,
            "GetWorkflowExecution": self.get_workflow_execution,
            "ListWorkflowStepExecutions": self.list_workflow_step_executions,
            "GetWorkflowStepExecution": self.get_workflow_step_execution,
            "ListImageScanFindings": self.list_image_scan_findings,
        }

    @property
    def operations(self) -> tuple[str, ...]:
        """Names of the operations this backend implements."""
        return tuple(self._operations)

    # ---------------------------------------------------------------- controls
    def set_phase_seconds(self, phase_seconds: Seconds | Mapping[str, Seconds]) -> None:
        """Change the phase durations of builds started from now on (see :func:`phase_durations`)."""
        durations = phase_durations(phase_seconds)
        with self.lock:
            self._phase_seconds = durations

    def hold_builds(self) -> None:
        """Keep builds started from now on PENDING until :meth:`release_builds`.

        The service queues builds this way when the account is at its concurrent-build capacity; tests use it to
        have many builds in flight at once, however slowly their callers start them.
        """
        with self.lock:
            self._holding = True

    def release_builds(self) -> int:
        """Stop holding; each held build walks its phases from now on.  Returns how many were released."""
        with self.lock:
            now = self.clock.now()
            released = 0
            for build in self._held:
                if build.cancelled_at is not None:
                    continue
                shift = now - build.created_at
                first, *rest = build.planned_phases
                build.phases = [(first[0], 0.0, first[2] + shift)] + [
                    (phase, start + shift, end + shift) for phase, start, end in rest
                ]
                released += 1
            self._held.clear()
            self._holding = False
            return released

    def set_visibility_delay(self, seconds: float) -> None:
        """GetImage answers not found for this many seconds after a build starts (eventual consistency)."""
        if seconds < 0:
            raise ValueError(f"visibility_delay: {seconds} must be >= 0")
        with self.lock:
            self.visibility_delay = float(seconds)

    def set_strict(self, strict: bool) -> None:
        """Require (``True``) or register on first use (``False``) the resources requests name."""
        with self.lock:
            self.strict = bool(strict)

    def fail_next_builds(self, failure: PlannedFailure, count: int = 1) -> None:
        """Make the next ``count`` new builds end FAILED as ``failure`` plans (see
        :meth:`~.emulator.ImageBuilderEmulator.fail_next_builds`)."""
        phase, step = failure.phase, failure.step
        if phase not in PHASES:
            raise ValueError(f"fail_next_builds: phase {phase!r} is not one of {PHASES}")
        for name, text, limit in (
            ("reason", failure.reason, 1024),
            ("step_message", failure.step_message, 500),
            ("workflow_message", failure.workflow_message, 500),
        ):
            if text is not None and (not isinstance(text, str) or not text or len(text) > limit):
                raise ValueError(f"fail_next_builds: {name} must have 1 to {limit} characters")
        if phase not in PHASE_WORKFLOW and (step, failure.step_message, failure.workflow_message) != (None, None, None):
            raise ValueError(
                f"fail_next_builds: phase {phase} runs no workflow, so step, step_message and workflow_message do "
                f"not apply; workflows run in {', '.join(PHASE_WORKFLOW)}"
            )
        if step is not None and step not in phase_steps(phase):
            raise ValueError(
                f"fail_next_builds: step {step!r} is not a step of the {phase} workflow; steps are "
                f"{', '.join(phase_steps(phase))}"
            )
        if count < 1:
            raise ValueError(f"fail_next_builds: count {count} must be at least 1")
        with self.lock:
            self._planned_failures.extend([failure] * count)

    def plan_scan_findings(self, findings: list[dict[str, Any]], count: int = 1) -> None:
        """Give each of the next ``count`` new builds these image scan findings (see ``findings.py``).

        ListImageScanFindings returns them once the build is AVAILABLE, and only if image scanning is enabled on
        it (``imageScanningConfiguration``, on the CreateImage request or the pipeline).
        """
        checked = planned_findings(findings)
        if count < 1:
            raise ValueError(f"plan_scan_findings: count {count} must be at least 1")
        with self.lock:
            self._planned_findings.extend([checked] * count)

    def set_scan_findings(self, image_build_version_arn: str, findings: list[dict[str, Any]]) -> None:
        """Replace the image scan findings of an existing build."""
        checked = planned_findings(findings)
        with self.lock:
            if image_build_version_arn not in self.builds:
                raise ValueError(f"set_scan_findings: no build {image_build_version_arn!r}")
            self.builds[image_build_version_arn].scan_findings = checked

    def set_distribution_regions(self, distribution_configuration_arn: str, regions: list[str]) -> None:
        """Create (or replace) the distribution configuration ``arn`` with one AMI distribution per region.

        The same as CreateDistributionConfiguration with ``distributions=[{"region": r,
        "amiDistributionConfiguration": {}} ...]``, for tests that name the configuration only by its ARN.
        """
        distributions = [{"region": region, "amiDistributionConfiguration": {}} for region in regions]
        try:
            self._check_distributions(distributions)  # what CreateDistributionConfiguration would refuse
        except ServiceError as error:
            raise ValueError(f"set_distribution_regions: {error.message}") from None
        match = ARN.match(distribution_configuration_arn)
        if match is None or match["kind"] != "distribution-configuration":
            raise ValueError(f"set_distribution_regions: {distribution_configuration_arn!r} is not a distribution ARN")
        if not RESOURCE_NAME.match(match["name"]):
            raise ValueError(f"set_distribution_regions: {match['name']!r} is not a valid resource name")
        request = {"name": match["name"], "distributions": distributions}
        with self.lock:
            self.resources[distribution_configuration_arn] = DistributionConfiguration(
                distribution_configuration_arn, match["name"], request, self.account_id, self._now_wall()
            )

    def image_arns(self) -> list[str]:
        """ARNs of all image build versions, oldest first."""
        with self.lock:
            return list(self.builds)

    def build(self, arn: str) -> Build:
        """The build behind an image build version ARN (its ``request`` is what the caller sent)."""
        with self.lock:
            return self.builds[arn]

    def status(self, arn: str) -> str:
        """The current status of an image build version."""
        with self.lock:
            return self.builds[arn].status(self.clock.now())[0]

    def statuses(self) -> dict[str, str]:
        """Every image build version ARN with its current status."""
        with self.lock:
            now = self.clock.now()
            return {arn: build.status(now)[0] for arn, build in self.builds.items()}

    # ---------------------------------------------------------------- dispatch
    def call(self, operation: str, region: str, params: dict[str, Any]) -> dict[str, Any]:
        """Validate ``params`` like the service and run ``operation``; return the response body."""
        handler = self._operations.get(operation)
        if handler is None:
            raise NotImplementedByEmulator(f"the {operation} operation")
        violations = check_shape(params, operation_shapes(operation)[0], path="")
        if violations:
            parameter, _, detail = violations[0].partition(": ")
            raise invalid_parameter(parameter.lstrip("."), detail)
        for parameter, version in arn_versions(params):
            problem = version_problem(version)
            if problem is not None:
                raise invalid_parameter(parameter, problem)
        with self.lock:
            if params.get("dryRun"):
                raise ServiceError("DryRunOperationException", f"The {operation} dry run would have succeeded.")
            if "filters" in params and operation != "ListImageScanFindings":  # the one List that filters here
                raise NotImplementedByEmulator("filters in List operations")
            return handler(region, params)

    def _idempotent(
        self, operation: str, region: str, params: dict[str, Any], act: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """Same token + same request: the first response again; same token + another request: a mismatch."""
        token = params["clientToken"]
        fingerprint = json.dumps({k: v for k, v in params.items() if k != "clientToken"}, sort_keys=True)
        previous = self._tokens.get((region, operation, token))
        if previous is not None:
            if previous[0] != fingerprint:
                raise ServiceError(
                    "IdempotentParameterMismatchException",
                    f"The client token {token} was already used for a {operation} request with different parameters.",
                )
            return dict(previous[1])
        response = {"clientToken": token, **act()}
        self._tokens[(region, operation, token)] = (fingerprint, response)
        return dict(response)

    def _now_wall(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)

    # ---------------------------------------------------------------- resources
    def _arn(self, region: str, kind: str, name: str, version: str | None = None) -> str:
        arn = f"arn:{partition_of(region)}:imagebuilder:{region}:{self.account_id}:{kind}/{arn_name(name)}"
        return f"{arn}/{version}" if version else arn

    def _check_new(self, arn: str, kind: str) -> None:
        if arn in self.resources:
            raise ServiceError(
                "ResourceAlreadyExistsException",
                f"The following resource '{RESOURCE_LABELS[kind]}' already exists: '{arn}'.",
            )

    def _create(
        self,
        region: str,
        params: dict[str, Any],
        kind: str,
        make: Callable[[str, str, dict[str, Any], str, dt.datetime], Resource],
        version: str | None = None,
    ) -> dict[str, Any]:
        """A Create call of ``kind``, once per client token: the new resource is ``make(arn, name, request, owner,
        created)``, the resource class itself or a function that checks the request first."""
        label = RESOURCE_LABELS[kind]
        arn = self._arn(region, kind, params["name"], version)

        def create() -> dict[str, Any]:
            self._check_new(arn, kind)
            request = {k: v for k, v in params.items() if k not in ("clientToken", "dryRun")}
            self.resources[arn] = make(arn, params["name"], request, self.account_id, self._now_wall())
            return {f"{label[0].lower()}{label[1:]}Arn": arn}  # imageRecipeArn, ..., imagePipelineArn

        return self._idempotent(f"Create{label}", region, params, create)

    def _create_recipe(self, region: str, params: dict[str, Any], kind: str) -> dict[str, Any]:
        problem = version_problem(params["semanticVersion"])
        if problem is not None:
            raise ServiceError("InvalidVersionNumberException", f"The semantic version is not valid: {problem}.")
        self._check_recipe(params, kind)
        version = self._next_version(self._arn(region, f"{kind}-recipe", params["name"]), params["semanticVersion"])
        created = self._create(region, params, f"{kind}-recipe", partial(Recipe, kind=kind, version=version), version)
        return created | {"latestVersionReferences": version_references(created[f"{kind}RecipeArn"])}

    def _next_version(self, versionless_arn: str, wanted: str) -> str:
        """The version a recipe is created with: ``wanted``, or for a wildcard version (``1.0.x``) the next one.

        The user guide's "Create a new version of an image recipe": with a wildcard version such as 1.0.x, "Image
        Builder automatically increments the version (for example, 1.0.1, 1.0.2, 1.0.3...)".  Here the first
        wildcard node goes one past the highest existing matching version (the nodes right of it to 0); with none,
        every wildcard node is 0.
        """
        if "x" not in wanted:
            return wanted
        nodes = wanted.split(".")
        first = nodes.index("x")
        existing = [
            resource.version
            for arn, resource in self.resources.items()
            if isinstance(resource, Recipe)
            and arn.rsplit("/", 1)[0] == versionless_arn
            and version_matches(wanted, resource.version)
        ]
        if not existing:
            return ".".join("0" if node == "x" else node for node in nodes)
        highest = max(existing, key=version_key).split(".")
        return ".".join(highest[:first] + [str(int(highest[first]) + 1)] + ["0"] * (2 - first))

    def _check_recipe(self, params: dict[str, Any], kind: str) -> None:
        """A recipe's components (each once; in strict mode, existing) and an image recipe's ``parentImage``."""
        seen: set[str] = set()
        for index, component in enumerate(params.get("components", [])):
            arn = component["componentArn"]
            versionless = "/".join(arn.split("/")[:2])
            if versionless in seen:  # the model's CreateImageRecipeRequest.components
                raise invalid_parameter(
                    f"components[{index}].componentArn",
                    f"{versionless} is listed more than once: you can specify each component only one time in a "
                    "recipe.",
                )
            seen.add(versionless)
            if self.strict and arn.split(":")[4] == self.account_id:  # the emulator has no component of its own
                raise not_found(arn)
        if kind == "image" and not PARENT_IMAGE.match(params["parentImage"]):
            raise invalid_parameter(
                "parentImage",
                f"{params['parentImage']!r} is not an AMI ID, an Image Builder image ARN, an SSM parameter "
                "(ssm:<name or ARN>) or an AWS Marketplace product ID.",
            )

    def create_infrastructure_configuration(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        return self._create(region, params, "infrastructure-configuration", InfrastructureConfiguration)

    def create_distribution_configuration(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        self._check_distributions(params["distributions"])
        return self._create(region, params, "distribution-configuration", DistributionConfiguration)

    @staticmethod
    def _check_distributions(distributions: list[dict[str, Any]]) -> None:
        """The service's rules for a distribution configuration's ``distributions``."""
        if not distributions:
            raise invalid_parameter("distributions", "At least one distribution must be provided.")
        seen: set[str] = set()
        for index, distribution in enumerate(distributions):
            if not any(output in distribution for output in DISTRIBUTION_OUTPUTS):
                raise invalid_parameter(
                    f"distributions[{index}]",
                    "One or more outputs should be provided for each region in a distribution configuration.",
                )
            if distribution["region"] not in aws_regions():
                raise invalid_parameter(
                    f"distributions[{index}].region", f"{distribution['region']!r} is not an AWS Region."
                )
            name = distribution.get("amiDistributionConfiguration", {}).get("name")
            if name is not None and not any(match["tag"] == "buildDate" for match in AMI_NAME_TAG.finditer(name)):
                raise invalid_parameter(  # the model's AmiDistributionConfiguration.name
                    f"distributions[{index}].amiDistributionConfiguration.name",
                    f"{name!r} must include the {{{{ imagebuilder:buildDate }}}} dynamic tag, so that each build "
                    "produces a uniquely named AMI.",
                )
            if distribution["region"] in seen:
                raise invalid_parameter(
                    f"distributions[{index}].region", f"Region {distribution['region']} is listed more than once."
                )
            seen.add(distribution["region"])

    def _get(self, region: str, params: dict[str, Any], key: str) -> dict[str, Any]:
        """Get<Resource>: ``key`` is the response member, ``<key>Arn`` the request's (``imageRecipe``...)."""
        resource = self.resources.get(params[f"{key}Arn"])
        if resource is None or not isinstance(
            resource, (Recipe, InfrastructureConfiguration, DistributionConfiguration)
        ):
            raise not_found(params[f"{key}Arn"])
        if isinstance(resource, Recipe):
            return {key: resource.describe(), "latestVersionReferences": version_references(resource.arn)}
        return {key: resource.describe()}

    def _in_region(self, region: str, kind: type[Resource]) -> list[Any]:
        return [
            resource
            for arn, resource in self.resources.items()
            if isinstance(resource, kind) and arn.split(":")[3] == region
        ]

    def _list(self, region: str, params: dict[str, Any], kind: type[Resource], key: str) -> dict[str, Any]:
        return self._page(params, key, [resource.summary() for resource in self._in_region(region, kind)])

    def _list_recipes(self, region: str, params: dict[str, Any], kind: str) -> dict[str, Any]:
        key = "imageRecipeSummaryList" if kind == "image" else "containerRecipeSummaryList"
        if params.get("owner", "Self") != "Self":
            return self._page(params, key, [])
        recipes = [recipe for recipe in self._in_region(region, Recipe) if recipe.kind == kind]
        return self._page(params, key, [recipe.summary() for recipe in recipes])

    def _delete(self, region: str, params: dict[str, Any], arn_member: str) -> dict[str, Any]:
        arn = params[arn_member]
        if arn not in self.resources:
            raise not_found(arn)
        dependents = [
            pipeline.arn
            for pipeline in self.resources.values()
            if isinstance(pipeline, ImagePipeline) and arn in pipeline.request.values()
        ]
        if dependents:
            raise ServiceError(
                "ResourceDependencyException",
                f"Resource dependency error: The resource ARN '{arn}' has other resources depended on it.",
            )
        del self.resources[arn]
        return {arn_member: arn}

    def _page(self, params: dict[str, Any], key: str, items: list[dict[str, Any]], scope: str = "") -> dict[str, Any]:
        """One page of ``items`` under ``key``; a token is valid only for the same list and ``scope``."""
        start = 0
        if "nextToken" in params:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(params["nextToken"].encode()))
                if (
                    decoded["list"] != key
                    or decoded.get("scope", "") != scope
                    or not isinstance(decoded["offset"], int)
                    or decoded["offset"] < 0
                ):
                    raise ValueError(decoded)
                start = decoded["offset"]
            except (ValueError, KeyError, TypeError, binascii.Error) as error:
                raise ServiceError(
                    "InvalidPaginationTokenException", f"The pagination token {params['nextToken']!r} is not valid."
                ) from error
        size = params.get("maxResults", 25)
        body: dict[str, Any] = {key: items[start : start + size]}
        if start + size < len(items):
            state: dict[str, Any] = {"list": key, "offset": start + size}
            if scope:
                state["scope"] = scope
            token = json.dumps(state).encode()
            body["nextToken"] = base64.urlsafe_b64encode(token).decode()
        return body

    # ---------------------------------------------------------------- references, strict or lenient
    def _reference(self, arn: str, region: str) -> Resource:
        """The resource an ARN names; in lenient mode registered with defaults on first use."""
        match = ARN.match(arn)
        if match is None:  # pragma: no cover - the shape check rejects malformed ARNs first
            raise not_found(arn)
        version = match["version"]
        if version and "x" in version:
            prefix = arn.rsplit("/", 1)[0] + "/"
            candidates = [
                resource
                for key, resource in self.resources.items()
                if key.startswith(prefix)
                and isinstance(resource, Recipe)
                and version_matches(version, resource.version)
            ]
            if candidates:
                return max(candidates, key=lambda recipe: version_key(recipe.version))
            arn = prefix + ".".join("0" if part == "x" else part for part in version.split("."))
        resource = self.resources.get(arn)
        if resource is not None:
            return resource
        if self.strict:
            raise not_found(arn)
        if not RESOURCE_NAME.match(match["name"]):
            raise ServiceError(
                "ResourceNotFoundException",
                f"The resource ARN '{arn}' does not exist (no resource can be named {match['name']!r}: names have "
                "3 to 128 characters).",
            )
        return self._register(arn, match["kind"], match["name"], match["partition"], match["region"])

    def _register(self, arn: str, kind: str, name: str, partition: str, arn_region: str) -> Resource:
        defaults = {"partition": partition, "region": arn_region}
        created = self._now_wall()
        resource: Resource
        if kind in ("image-recipe", "container-recipe"):
            request: dict[str, Any] = {
                "name": name,
                "semanticVersion": arn.rsplit("/", 1)[1],
                "components": [{"componentArn": DEFAULT_COMPONENT.format(**defaults)}],
                "parentImage": DEFAULT_PARENT_IMAGE.format(**defaults),
            }
            if kind == "container-recipe":
                request |= {"containerType": "DOCKER", "targetRepository": {"service": "ECR", "repositoryName": name}}
            resource = Recipe(
                arn,
                name,
                request,
                self.account_id,
                created,
                kind=kind.split("-")[0],
                version=request["semanticVersion"],
            )
        elif kind == "infrastructure-configuration":
            request = {"name": name, "instanceTypes": ["m5.large"], "instanceProfileName": DEFAULT_INSTANCE_PROFILE}
            resource = InfrastructureConfiguration(arn, name, request, self.account_id, created)
        elif kind == "distribution-configuration":
            request = {"name": name, "distributions": [{"region": arn_region, "amiDistributionConfiguration": {}}]}
            resource = DistributionConfiguration(arn, name, request, self.account_id, created)
        else:
            raise not_found(arn)  # pipelines are never registered on first use: they name other resources
        self.resources[arn] = resource
        return resource

    def _references(self, region: str, params: dict[str, Any]) -> tuple[Recipe, InfrastructureConfiguration, Any]:
        recipes = [key for key in ("imageRecipeArn", "containerRecipeArn") if key in params]
        if len(recipes) != 1:
            raise ServiceError(
                "InvalidRequestException",
                "You must specify exactly one recipe for your image, using either a containerRecipeArn or an "
                f"imageRecipeArn (got {len(recipes)})",
            )
        recipe = self._reference(params[recipes[0]], region)
        infrastructure = self._reference(params["infrastructureConfigurationArn"], region)
        distribution = None
        if "distributionConfigurationArn" in params:
            distribution = self._reference(params["distributionConfigurationArn"], region)
        assert isinstance(recipe, Recipe) and isinstance(infrastructure, InfrastructureConfiguration)
        return recipe, infrastructure, distribution

    # ---------------------------------------------------------------- images
    def _start_build(
        self,
        region: str,
        request: dict[str, Any],
        recipe: Recipe,
        infrastructure: InfrastructureConfiguration,
        distribution: DistributionConfiguration | None,
        pipeline: ImagePipeline | None = None,
    ) -> Build:
        name = arn_name(recipe.name)
        key = (region, name, recipe.version)
        number = self._build_numbers.get(key, 0) + 1
        self._build_numbers[key] = number
        arn = (
            f"arn:{partition_of(region)}:imagebuilder:{region}:{self.account_id}:image/{name}/{recipe.version}/{number}"
        )
        tests_enabled = request.get("imageTestsConfiguration", {}).get("imageTestsEnabled", True)
        phases, offset = [], 0.0
        for phase in PHASES:
            if phase == "TESTING" and not tests_enabled:
                continue
            low, high = self._phase_seconds[phase]
            seconds = low if low == high else self._random.uniform(low, high)
            phases.append((phase, offset, offset + seconds))
            offset += seconds
        planned = phases
        if self._holding:
            phases = [(phases[0][0], 0.0, HELD_SECONDS)] + [
                (phase, start + HELD_SECONDS, end + HELD_SECONDS) for phase, start, end in phases[1:]
            ]
        build = Build(
            arn=arn,
            region=region,
            account_id=self.account_id,
            name=name,
            version=recipe.version,
            number=number,
            request=dict(request),
            recipe=recipe,
            infrastructure=infrastructure,
            distribution=distribution,
            created_at=self.clock.now(),
            created_wall=self._now_wall(),
            phases=phases,
            planned_phases=planned,
            failure=self._planned_failures.pop(0) if self._planned_failures else None,
            pipeline=pipeline,
            scan_findings=self._planned_findings.pop(0) if self._planned_findings else [],
        )
        self.builds[arn] = build
        if self._holding:
            self._held.append(build)
        for definition in {MANAGED_WORKFLOWS[(workflow_type, build.kind)] for workflow_type in PHASE_WORKFLOW.values()}:
            execution_id = workflow_execution_id(arn, definition.type)
            self._workflow_builds[execution_id] = build
            for step in definition.steps:
                self._step_workflows[step_execution_id(execution_id, step.name)] = (build, execution_id)
        return build

    def create_image(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        def create() -> dict[str, Any]:
            recipe, infrastructure, distribution = self._references(region, params)
            request = {k: v for k, v in params.items() if k != "clientToken"}
            arn = self._start_build(region, request, recipe, infrastructure, distribution).arn
            return {"imageBuildVersionArn": arn, "latestVersionReferences": version_references(arn)}

        return self._idempotent("CreateImage", region, params, create)

    def _find_build(self, region: str, arn: str) -> Build:
        """The build an image build version ARN names, or the newest build of an image version ARN."""
        match = ARN.match(arn)
        now = self.clock.now()
        if match is None or match["kind"] != "image":
            raise not_found(arn)
        if match["build"] is not None:
            candidates = [self.builds[arn]] if arn in self.builds else []
        else:
            prefix = arn.rsplit("/", 1)[0] + "/"
            candidates = [
                build
                for key, build in self.builds.items()
                if key.startswith(prefix) and version_matches(match["version"], build.version)
            ]
        candidates = [
            build for build in candidates if build.region == region and now - build.created_at >= self.visibility_delay
        ]
        if not candidates:
            raise ServiceError("ResourceNotFoundException", f"Image {arn} cannot be found.")
        return max(candidates, key=lambda build: (version_key(build.version), build.number))

    def get_image(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        build = self._find_build(region, params["imageBuildVersionArn"])
        image = build.describe(self.clock.now())
        if self.advance_on_poll and build not in self._held and image["state"]["status"] in IN_PROGRESS_STATES:
            self._end_current_phase(build)
        return {"image": image, "latestVersionReferences": version_references(build.arn)}

    def _end_current_phase(self, build: Build) -> None:
        """Move the (manual) clock to the end of ``build``'s current phase (``advance_on_poll``)."""
        assert isinstance(self.clock, ManualClock)
        now = self.clock.now()
        end = next(build.created_at + end for _, _, end in build.phases if build.created_at + end > now)
        self.clock.advance(end - now)

    def cancel_image_creation(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        arn = params["imageBuildVersionArn"]

        def cancel() -> dict[str, Any]:
            build = self._find_build(region, arn)
            status, _ = build.status(self.clock.now())
            if status not in IN_PROGRESS_STATES:
                raise ServiceError(
                    "ResourceInUseException", f"Image {arn} cannot be cancelled because its status is {status}"
                )
            build.cancelled_at = self.clock.now()
            return {"imageBuildVersionArn": build.arn}

        return self._idempotent("CancelImageCreation", region, params, cancel)

    def list_image_build_versions(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        version_arn = params.get("imageVersionArn")  # without it: every image's builds (the model's request)
        now = self.clock.now()
        builds = [
            build
            for build in self.builds.values()
            if build.region == region and version_arn in (None, build.version_arn)
        ]
        return self._page(params, "imageSummaryList", [build.summary(now) for build in builds])

    # ---------------------------------------------------------------- pipelines
    def _pipeline(self, arn: str) -> ImagePipeline:
        pipeline = self.resources.get(arn)
        if not isinstance(pipeline, ImagePipeline):
            raise not_found(arn)
        return pipeline

    def create_image_pipeline(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        def pipeline(arn: str, name: str, request: dict[str, Any], owner: str, created: dt.datetime) -> ImagePipeline:
            recipe, _, _ = self._references(region, params)
            request["status"] = params.get("status", "ENABLED")
            return ImagePipeline(arn, name, request, owner, created, platform=recipe.platform)

        return self._create(region, params, "image-pipeline", pipeline)

    def get_image_pipeline(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"imagePipeline": self._describe_pipeline(self._pipeline(params["imagePipelineArn"]))}

    def _describe_pipeline(self, pipeline: ImagePipeline) -> dict[str, Any]:
        last_status = None
        if pipeline.last_build is not None:
            status = pipeline.last_build.status(self.clock.now())[0]
            last_status = status
        return pipeline.describe(last_status)

    def list_image_pipelines(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        pipelines = [self._describe_pipeline(pipeline) for pipeline in self._in_region(region, ImagePipeline)]
        return self._page(params, "imagePipelineList", pipelines)

    def update_image_pipeline(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        pipeline = self._pipeline(params["imagePipelineArn"])

        def update() -> dict[str, Any]:
            request = {k: v for k, v in params.items() if k not in ("clientToken", "imagePipelineArn", "dryRun")}
            current = "imageRecipeArn" if "imageRecipeArn" in pipeline.request else "containerRecipeArn"
            other = "containerRecipeArn" if current == "imageRecipeArn" else "imageRecipeArn"
            if other in request and current not in request:  # the model's UpdateImagePipeline documentation
                raise ServiceError(
                    "InvalidRequestException",
                    f"The pipeline {pipeline.arn} builds from a {current[: -len('RecipeArn')]} recipe, so {other} is "
                    "not valid: the recipe must be the same type, image or container, as the pipeline's current "
                    "recipe.",
                )
            # No selective updates (the API reference): the request names the recipe, as CreateImagePipeline does.
            recipe, _, _ = self._references(region, request)
            request |= {"name": pipeline.name, "status": params.get("status", "ENABLED")}
            if "tags" in pipeline.request:
                request["tags"] = pipeline.request["tags"]
            pipeline.request = request
            pipeline.platform = recipe.platform
            pipeline.updated = self._now_wall()
            return {"imagePipelineArn": pipeline.arn}

        return self._idempotent("UpdateImagePipeline", region, params, update)

    def start_image_pipeline_execution(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        arn = params["imagePipelineArn"]

        def start() -> dict[str, Any]:
            # The service starts a build "whether the pipeline is enabled or disabled" (its API reference).
            pipeline = self._pipeline(arn)
            recipe, infrastructure, distribution = self._references(region, pipeline.request)
            request = members(
                pipeline.request,
                (
                    "imageTestsConfiguration",
                    "imageScanningConfiguration",
                    "enhancedImageMetadataEnabled",
                    "executionRole",
                    "workflows",
                    "loggingConfiguration",
                ),
            )
            tags = dict(pipeline.request.get("imageTags") or {}) | dict(params.get("tags") or {})
            if tags:
                request["tags"] = tags
            build = self._start_build(region, request, recipe, infrastructure, distribution, pipeline)
            pipeline.last_run = build.created_wall
            pipeline.last_build = build
            return {"imageBuildVersionArn": build.arn}

        return self._idempotent("StartImagePipelineExecution", region, params, start)

    def list_image_pipeline_images(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        pipeline = self._pipeline(params["imagePipelineArn"])
        now = self.clock.now()
        builds = [build.summary(now) for build in self.builds.values() if build.pipeline is pipeline]
        return self._page(params, "imageSummaryList", builds)

    # ---------------------------------------------------------------- workflows and scan findings
    def list_workflow_executions(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        build = self._find_build(region, params["imageBuildVersionArn"])
        now = self.clock.now()
        runs = [run.metadata() for run in build.workflow_runs(now)]
        body = self._page(params, "workflowExecutions", runs, scope=build.arn)
        body["imageBuildVersionArn"] = build.arn
        failure = build.status(now)[1]
        if failure is not None:
            body["message"] = clip(build.failure_reason(failure), 500)
        return body

    def _workflow_run(self, region: str, execution_id: str) -> WorkflowRun:
        """A started workflow execution of a build in ``region``, or the service's not-found answer."""
        build = self._workflow_builds.get(execution_id)
        now = self.clock.now()
        if build is not None and build.region == region and now - build.created_at >= self.visibility_delay:
            for run in build.workflow_runs(now):
                if run.execution_id == execution_id:
                    return run
        raise ServiceError("ResourceNotFoundException", f"Workflow execution {execution_id} cannot be found.")

    def get_workflow_execution(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        return self._workflow_run(region, params["workflowExecutionId"]).describe()

    def list_workflow_step_executions(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        run = self._workflow_run(region, params["workflowExecutionId"])
        steps = [step.metadata() for step in run.visible_steps()]
        body = self._page(params, "steps", steps, scope=run.execution_id)
        body |= {
            "workflowBuildVersionArn": run.arn,
            "workflowExecutionId": run.execution_id,
            "imageBuildVersionArn": run.image_arn,
        }
        return body

    def get_workflow_step_execution(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        step_id = params["stepExecutionId"]
        owner = self._step_workflows.get(step_id)
        if owner is not None and owner[0].region == region:
            try:
                run = self._workflow_run(region, owner[1])
            except ServiceError:
                run = None
            if run is not None:
                for step in run.visible_steps():
                    if step.execution_id == step_id:
                        return run.describe_step(step)
        raise ServiceError("ResourceNotFoundException", f"Workflow step execution {step_id} cannot be found.")

    def list_image_scan_findings(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        wanted: tuple[str, str] | None = None
        for entry in params.get("filters", []):
            name, values = entry.get("name"), entry.get("values")
            if name not in SCAN_FINDING_FILTERS or not values:
                raise ServiceError(
                    "InvalidRequestException",
                    f"The filter {name!r} is not valid: a filter has a name ({', '.join(SCAN_FINDING_FILTERS)}) "
                    "and one value.",
                )
            wanted = (SCAN_FINDING_FILTERS[name], values[0])
        now = self.clock.now()
        findings = [
            finding
            for build in self.builds.values()
            if build.region == region
            for finding in build.scan_finding_descriptions(now)
        ]
        if wanted is not None:
            path, value = wanted
            findings = [finding for finding in findings if _finding_value(finding, path) == value]
        scope = json.dumps(wanted) if wanted is not None else ""
        return self._page(params, "findings", findings, scope=scope)


#: Filters of ListImageScanFindings: filter name -> where its value is in an ``ImageScanFinding``.
SCAN_FINDING_FILTERS: dict[str, str] = {
    "imageBuildVersionArn": "imageBuildVersionArn",
    "imagePipelineArn": "imagePipelineArn",
    "vulnerabilityId": "packageVulnerabilityDetails.vulnerabilityId",
    "severity": "severity",
}


def _finding_value(finding: dict[str, Any], path: str) -> Any:
    value: Any = finding
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value
