"""Resources of the emulated service, each owning its state and its description in the service's shapes.

Recipes, configurations and pipelines are stored as the request that created them; :class:`Build` is one image
build version, whose status is computed from the clock when read (no background thread moves builds along, so a
manual clock makes the lifecycle deterministic).

Its workflow executions (:func:`workflow_runs`, on the definitions of ``workflows.py``) are computed the same way,
so they and their steps appear as their phase starts.  Each workflow's steps share its phase's time evenly.  A
planned failure ends its phase's workflow FAILED in the step it names: the steps before it COMPLETED (their
rollback COMPLETED where the action has one), the failed step FAILED with its message, the steps after it SKIPPED.
A cancelled build cancels the running workflow and step.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
from typing import Any

from airflow_imagebuilder.testing.clock import timestamp
from airflow_imagebuilder.testing.findings import image_scan_finding
from airflow_imagebuilder.testing.workflows import (
    DEFAULT_FAILED_STEP,
    MANAGED_WORKFLOW_VERSION,
    MANAGED_WORKFLOWS,
    PHASE_WORKFLOW,
    StepDefinition,
    StepRun,
    WorkflowDefinition,
    WorkflowRun,
    clip,
    step_execution_id,
    workflow_execution_id,
)

#: The lifecycle the emulator walks: the provider's ``IN_PROGRESS_STATES``, in the order a build passes them (a set
#: has no order, so the order is written here).  TESTING is skipped when image tests are disabled.
PHASES: tuple[str, ...] = ("PENDING", "CREATING", "BUILDING", "TESTING", "DISTRIBUTING", "INTEGRATING")

ARN = re.compile(
    r"^arn:(?P<partition>aws[^:]*):imagebuilder:(?P<region>[^:]+):(?P<account>[0-9]{12}|aws[^:]*):"
    r"(?P<kind>image-recipe|container-recipe|infrastructure-configuration|distribution-configuration|"
    r"image-pipeline|image)/(?P<name>[a-z0-9-_]+)(?:/(?P<version>[0-9x]+\.[0-9x]+\.[0-9x]+)(?:/(?P<build>[0-9]+))?)?\Z"
)
#: The service's ResourceName rule (3-128 characters).  ``\Z``, not ``$``: see ``shapes.python_pattern``.
RESOURCE_NAME = re.compile(r"^[-_A-Za-z-0-9][-_A-Za-z0-9 ]{1,126}[-_A-Za-z-0-9]\Z")
DEFAULT_PARENT_IMAGE = "arn:{partition}:imagebuilder:{region}:aws:image/amazon-linux-2023-x86/x.x.x"
DEFAULT_COMPONENT = "arn:{partition}:imagebuilder:{region}:aws:component/update-linux/x.x.x"
DEFAULT_INSTANCE_PROFILE = "EC2InstanceProfileForImageBuilder"
#: The repository Image Builder scans container images in when the request names none.
SCANNING_REPOSITORY = "image-builder-image-scanning-repository"


#: A semantic version whose ``x`` wildcards stand only in the rightmost nodes.  The user guide's "Semantic
#: versioning": "all nodes to the right of the first wildcard must also be wildcards" (``1.x.8`` and ``x.2.x`` are
#: not valid, and produce an error).
WILDCARD_VERSION = re.compile(r"^(?:x\.x\.x|[0-9]+\.x\.x|[0-9]+\.[0-9]+\.x|[0-9]+\.[0-9]+\.[0-9]+)\Z")
#: The highest value of a version node, 2^30-1 (the same page: "Assignment").
MAX_VERSION_NODE = 2**30 - 1
#: The semantic version in an Image Builder ARN (``.../<name>/<x.y.z>`` or ``.../<name>/<x.y.z>/<build>``).
ARN_VERSION = re.compile(r"^arn:[^/]+/[^/]+/(?P<version>[0-9x]+\.[0-9x]+\.[0-9x]+)(?:/[0-9]+)?\Z")
#: The dynamic tags of an AMI name, with the date format of the service's default AMI name (the model's
#: ``AmiDistributionConfiguration.name``: "my-image 2022-10-26T22-30-05.912619Z"; the user guide's "Tag Image
#: Builder output resources" lists ``{{imagebuilder:buildDate}}`` and ``{{imagebuilder:buildVersion}}``).
AMI_NAME_TAG = re.compile(r"\{\{\s*imagebuilder:(?P<tag>buildDate|buildVersion)\s*\}\}")
AMI_DATE_FORMAT = "%Y-%m-%dT%H-%M-%S.%fZ"


def version_problem(version: str) -> str | None:
    """Why a semantic version (``1.2.3``, or with rightmost ``x`` wildcards) is not valid; None when it is."""
    if not WILDCARD_VERSION.match(version):
        return (
            f"{version!r} is not <major>.<minor>.<patch>: an x wildcard may stand only in the rightmost nodes "
            "(x.x.x, 1.x.x, 1.2.x), never left of a number (1.x.8, x.2.x)"
        )
    if any(node != "x" and int(node) > MAX_VERSION_NODE for node in version.split(".")):
        return f"{version!r} has a node above {MAX_VERSION_NODE} (2^30-1), the highest a node can be"
    return None


def arn_versions(params: dict[str, Any]) -> list[tuple[str, str]]:
    """(parameter, semantic version) of each versioned ARN a request names: its own members and its components."""
    named: list[tuple[str, Any]] = list(params.items())
    components = params.get("components")
    if isinstance(components, list):
        named += [
            (f"components[{index}].componentArn", component.get("componentArn"))
            for index, component in enumerate(components)
            if isinstance(component, dict)
        ]
    return [
        (name, match["version"])
        for name, value in named
        if isinstance(value, str) and (match := ARN_VERSION.match(value)) is not None
    ]


def version_references(arn: str) -> dict[str, str]:
    """``latestVersionReferences`` of a versioned resource: its ARN with x.x.x, <major>.x.x, <major>.<minor>.x and
    its own version (the model's ``LatestVersionReferences``: the latest version overall, and within the same
    major, minor and patch levels)."""
    match = ARN_VERSION.match(arn)
    assert match is not None, arn
    prefix = arn[: match.start("version")]
    major, minor, patch = match["version"].split(".")
    return {
        "latestVersionArn": f"{prefix}x.x.x",
        "latestMajorVersionArn": f"{prefix}{major}.x.x",
        "latestMinorVersionArn": f"{prefix}{major}.{minor}.x",
        "latestPatchVersionArn": f"{prefix}{major}.{minor}.{patch}",
    }


def ami_name(template: str | None, image_name: str, build: int, created: dt.datetime) -> str:
    """The output AMI's name: the distribution's name with its dynamic tags expanded, else the service's default."""
    date = f"{created:{AMI_DATE_FORMAT}}"
    if template is None:
        return f"{image_name} {date}"
    return AMI_NAME_TAG.sub(lambda match: date if match["tag"] == "buildDate" else str(build), template)


def arn_name(name: str) -> str:
    """The name segment the service puts in an ARN: lower case, spaces as hyphens."""
    return name.strip().lower().replace(" ", "-")


def version_matches(pattern: str, version: str) -> bool:
    """Whether a semantic version matches a version with ``x`` wildcards (``1.x.x``)."""
    return all(want in ("x", have) for want, have in zip(pattern.split("."), version.split("."), strict=True))


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def members(source: dict[str, Any], names: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """The members of ``source`` among ``names``, in that order, as given (absent ones stay absent)."""
    return {name: source[name] for name in names if name in source}


@dataclasses.dataclass
class Resource:
    """A named resource created by a ``Create*`` request (or registered on first use in lenient mode)."""

    arn: str
    name: str
    request: dict[str, Any]
    owner: str
    created: dt.datetime
    updated: dt.datetime | None = None

    @property
    def tags(self) -> dict[str, str]:
        return dict(self.request.get("tags") or {})

    def _common(self) -> dict[str, Any]:
        described: dict[str, Any] = {"arn": self.arn, "name": self.name, "dateCreated": timestamp(self.created)}
        if self.request.get("description"):
            described["description"] = self.request["description"]
        if self.tags:  # TagMap has min 1 in the model: no tags means no member
            described["tags"] = self.tags
        if self.updated is not None:  # only what an Update* call changed has it (no recipe: recipes are not updated)
            described["dateUpdated"] = timestamp(self.updated)
        return described


@dataclasses.dataclass
class Recipe(Resource):
    """An image recipe (``kind="image"``) or a container recipe (``kind="container"``)."""

    kind: str = "image"
    version: str = "1.0.0"

    @property
    def platform(self) -> str:
        if "platformOverride" in self.request:
            return str(self.request["platformOverride"])
        return "Windows" if "windows" in str(self.request.get("parentImage", "")).lower() else "Linux"

    @property
    def os_version(self) -> str:
        if "imageOsVersionOverride" in self.request:
            return str(self.request["imageOsVersionOverride"])
        return "Microsoft Windows Server 2022" if self.platform == "Windows" else "Amazon Linux 2023"

    def describe(self) -> dict[str, Any]:
        described = self._common()
        described |= {
            "platform": self.platform,
            "owner": self.owner,
            "version": self.version,
            "parentImage": self.request["parentImage"],
        }
        if self.request.get("components"):
            described["components"] = self.request["components"]
        if self.kind == "image":
            described["type"] = "AMI"
            optional: tuple[str, ...] = (
                "blockDeviceMappings",
                "workingDirectory",
                "additionalInstanceConfiguration",
                "amiTags",
                "amiWatermarks",
            )
        else:
            described["containerType"] = self.request["containerType"]
            described["encrypted"] = True
            optional = ("instanceConfiguration", "dockerfileTemplateData", "kmsKeyId", "workingDirectory")
            described["targetRepository"] = self.request["targetRepository"]
        return described | members(self.request, optional)

    def summary(self) -> dict[str, Any]:
        described = self.describe()
        keys = ["arn", "name", "platform", "owner", "parentImage", "dateCreated", "tags"]
        if self.kind == "container":
            keys.append("containerType")
        return members(described, keys)


@dataclasses.dataclass
class InfrastructureConfiguration(Resource):
    """Where builds run: instance types, instance profile, network."""

    def describe(self) -> dict[str, Any]:
        described = self._common()
        described["instanceTypes"] = list(self.request.get("instanceTypes", []))
        described["instanceProfileName"] = self.request["instanceProfileName"]
        described["terminateInstanceOnFailure"] = self.request.get("terminateInstanceOnFailure", True)
        described |= members(
            self.request,
            (
                "securityGroupIds",
                "subnetId",
                "logging",
                "keyPair",
                "snsTopicArn",
                "resourceTags",
                "instanceMetadataOptions",
                "placement",
                "parentInstance",
                "terminateInstanceOnCompletion",
            ),
        )
        return described

    def summary(self) -> dict[str, Any]:
        described = self.describe()
        keys = ("arn", "name", "description", "dateCreated", "dateUpdated", "resourceTags", "tags")
        summary = members(described, keys)
        summary |= {
            "instanceTypes": described["instanceTypes"],
            "instanceProfileName": self.request["instanceProfileName"],
        }
        return summary


@dataclasses.dataclass
class DistributionConfiguration(Resource):
    """Where images go: one entry per region."""

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(distribution["region"] for distribution in self.request["distributions"])

    def distribution(self, region: str) -> dict[str, Any]:
        return next(entry for entry in self.request["distributions"] if entry["region"] == region)

    def describe(self) -> dict[str, Any]:
        described = self._common()
        described["distributions"] = self.request["distributions"]
        described["timeoutMinutes"] = 720
        return described

    def summary(self) -> dict[str, Any]:
        described = self.describe()
        keys = ("arn", "name", "description", "dateCreated", "dateUpdated", "tags")
        return members(described, keys) | {"regions": list(self.regions)}


@dataclasses.dataclass
class ImagePipeline(Resource):
    """A pipeline: a recipe, configurations and settings from which executions build images."""

    platform: str = "Linux"
    last_run: dt.datetime | None = None
    last_build: Build | None = None

    @property
    def status(self) -> str:
        return str(self.request.get("status", "ENABLED"))

    def describe(self, last_run_status: str | None = None) -> dict[str, Any]:
        described = self._common()
        described |= {
            "platform": self.platform,
            "enhancedImageMetadataEnabled": self.request.get("enhancedImageMetadataEnabled", True),
            "infrastructureConfigurationArn": self.request["infrastructureConfigurationArn"],
            "imageTestsConfiguration": {"imageTestsEnabled": True, "timeoutMinutes": 720}
            | self.request.get("imageTestsConfiguration", {}),
            "status": self.status,
        }
        described |= members(
            self.request,
            (
                "imageRecipeArn",
                "containerRecipeArn",
                "distributionConfigurationArn",
                "schedule",
                "imageTags",
                "imageScanningConfiguration",
                "executionRole",
                "workflows",
                "loggingConfiguration",
            ),
        )
        if self.last_run is not None:
            described["dateLastRun"] = timestamp(self.last_run)
        if last_run_status is not None:
            described["lastRunStatus"] = last_run_status
        return described


@dataclasses.dataclass(frozen=True)
class PlannedFailure:
    """A failure a test plans for the next build.

    :param phase: the phase the build fails in (BUILDING, TESTING and DISTRIBUTING run a workflow).
    :param reason: ``state.reason`` verbatim; by default the service's ``Workflow Execution ID: wf-... failed
        with reason: <workflow message>`` (or ``Build failed`` in a phase without a workflow).
    :param failure_context: ``state.failureContext`` verbatim; by default one naming the failed workflow and step.
    :param step: the workflow step that fails (by default the phase's component or distribution step).
    :param step_message: the failed step's message; by default ``reason`` when given, else a generic one.
    :param workflow_message: the failed workflow's message; by default one naming the step and its message.
    """

    phase: str
    reason: str | None = None
    failure_context: dict[str, Any] | None = None
    step: str | None = None
    step_message: str | None = None
    workflow_message: str | None = None


@dataclasses.dataclass
class Build:
    """One image build version: ``image/<name>/<x.y.z>/<n>``, walking :data:`PHASES` on the clock."""

    arn: str
    region: str
    account_id: str
    name: str
    version: str
    number: int
    request: dict[str, Any]
    recipe: Recipe
    infrastructure: InfrastructureConfiguration
    distribution: DistributionConfiguration | None
    created_at: float
    created_wall: dt.datetime
    phases: list[tuple[str, float, float]]  # (status, start offset, end offset)
    #: The phases as drawn when the build started; ``phases`` differs while the build is held PENDING.
    planned_phases: list[tuple[str, float, float]] = dataclasses.field(default_factory=list)
    failure: PlannedFailure | None = None
    cancelled_at: float | None = None
    pipeline: ImagePipeline | None = None
    build_type: str = "USER_INITIATED"
    scan_findings: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.recipe.kind

    @property
    def version_arn(self) -> str:
        return self.arn.rsplit("/", 1)[0]

    @property
    def distribution_regions(self) -> tuple[str, ...]:
        return self.distribution.regions if self.distribution is not None else (self.region,)

    @property
    def scanning_configuration(self) -> dict[str, Any]:
        """``imageScanningConfiguration`` as the service describes it: disabled unless the request enabled it."""
        configuration: dict[str, Any] = {"imageScanningEnabled": False}
        configuration |= self.request.get("imageScanningConfiguration") or {}
        if self.kind == "container" and configuration["imageScanningEnabled"]:
            ecr = {"repositoryName": SCANNING_REPOSITORY} | configuration.get("ecrConfiguration", {})
            configuration["ecrConfiguration"] = ecr
        return configuration

    @property
    def scanning_enabled(self) -> bool:
        """Whether Amazon Inspector scans this build's output (``imageScanningConfiguration``)."""
        return bool(self.scanning_configuration["imageScanningEnabled"])

    def wall_time(self, offset: float) -> dt.datetime:
        """The wall-clock time ``offset`` clock seconds after the build started."""
        return self.created_wall + dt.timedelta(seconds=offset)

    def workflow_runs(self, now: float) -> list[WorkflowRun]:
        """The workflow executions started by clock time ``now``, each with its steps (see :func:`workflow_runs`)."""
        return workflow_runs(self, now)

    def scan_finding_descriptions(self, now: float) -> list[dict[str, Any]]:
        """``ImageScanFinding`` structures of this build: none until AVAILABLE, none unless scanning is enabled."""
        status, _ = self.status(now)
        if status != "AVAILABLE" or not self.scanning_enabled:
            return []
        return [
            image_scan_finding(
                finding,
                account_id=self.account_id,
                image_arn=self.arn,
                pipeline_arn=self.pipeline.arn if self.pipeline is not None else None,
                observed=self.wall_time(self.phases[-1][2]),
            )
            for finding in self.scan_findings
        ]

    def failure_reason(self, failure: PlannedFailure) -> str:
        """``state.reason`` of a FAILED build: the planned one, or the service's naming the failed workflow."""
        if failure.reason is not None:
            return failure.reason
        if PHASE_WORKFLOW.get(failure.phase) is None:
            return "Build failed"
        execution_id = workflow_execution_id(self.arn, PHASE_WORKFLOW[failure.phase])
        reason = f"Workflow Execution ID: {execution_id} failed with reason: {workflow_message(self, execution_id)}"
        return clip(reason, 1024)

    def status(self, now: float) -> tuple[str, PlannedFailure | None]:
        """The status at clock time ``now``, and the failure that ended the build if it FAILED."""
        if self.cancelled_at is not None and now >= self.cancelled_at:
            return "CANCELLED", None
        elapsed = now - self.created_at
        for phase, _start, end in self.phases:
            if elapsed < end:
                return phase, None
            if self.failure is not None and self.failure.phase == phase:
                return "FAILED", self.failure
        return "AVAILABLE", None

    def failure_context(self, failure: PlannedFailure) -> dict[str, Any]:
        """``state.failureContext`` of a FAILED build: the planned one, or one naming the failed workflow and step."""
        if failure.failure_context is not None:
            return dict(failure.failure_context)
        context: dict[str, Any] = {"imageStatus": failure.phase}
        workflow_type = PHASE_WORKFLOW.get(failure.phase)
        if workflow_type is None:
            return context
        run = next(run for run in self.workflow_runs(self.phases_end) if run.definition.type == workflow_type)
        failed = next(step for step in run.steps if step.status == "FAILED")
        context |= {
            "workflowExecutionId": run.execution_id,
            "workflowArn": run.arn,
            "stepExecutionId": failed.execution_id,
            "failedStep": failed.definition.name,
        }
        if failure.phase == "DISTRIBUTING":
            context["distributionFailure"] = {"errorMessage": failed.message or self.failure_reason(failure)}
        return context

    @property
    def phases_end(self) -> float:
        """Clock time at which the build's last phase ends (or ended)."""
        return self.created_at + self.phases[-1][2]

    def describe(self, now: float) -> dict[str, Any]:
        """The ``Image`` structure of GetImage."""
        status, failure = self.status(now)
        state: dict[str, Any] = {"status": status}
        if failure is not None:
            state["reason"] = self.failure_reason(failure)
            state["failureContext"] = self.failure_context(failure)
        elif status == "CANCELLED":
            state["reason"] = "Image creation was cancelled by the user (CancelImageCreation)"
        request = self.request
        image: dict[str, Any] = {
            "arn": self.arn,
            "type": "AMI" if self.kind == "image" else "DOCKER",
            "name": self.recipe.name,
            "version": f"{self.version}/{self.number}",
            "platform": self.recipe.platform,
            "enhancedImageMetadataEnabled": request.get("enhancedImageMetadataEnabled", True),
            "osVersion": self.recipe.os_version,
            "state": state,
            "infrastructureConfiguration": self.infrastructure.describe(),
            "imageTestsConfiguration": {"imageTestsEnabled": True, "timeoutMinutes": 720}
            | request.get("imageTestsConfiguration", {}),
            "dateCreated": timestamp(self.created_wall),
            "outputResources": self.output_resources(status, failure),
            "buildType": self.build_type,
            "imageSource": "CUSTOM",
        }
        image["imageRecipe" if self.kind == "image" else "containerRecipe"] = self.recipe.describe()
        if self.distribution is not None:
            image["distributionConfiguration"] = self.distribution.describe()
        if self.pipeline is not None:
            image["sourcePipelineArn"] = self.pipeline.arn
            image["sourcePipelineName"] = self.pipeline.name
        if request.get("tags"):
            image["tags"] = request["tags"]
        image["imageScanningConfiguration"] = self.scanning_configuration
        if self.scanning_enabled:
            image["scanState"] = scan_state(status)
        return image | members(request, ("executionRole", "workflows", "loggingConfiguration"))

    def summary(self, now: float) -> dict[str, Any]:
        """The ``ImageSummary`` structure of the List operations."""
        image = self.describe(now)
        keys = (
            "arn",
            "name",
            "type",
            "version",
            "platform",
            "osVersion",
            "state",
            "dateCreated",
            "outputResources",
            "tags",
            "buildType",
            "imageSource",
            "loggingConfiguration",
        )
        return members(image, keys) | {"owner": self.account_id}

    def output_resources(self, status: str, failure: PlannedFailure | None) -> dict[str, Any]:
        """AMIs (or container URIs) per distribution region once distributed; empty lists before."""
        distributed = status == "AVAILABLE" or (failure is not None and failure.phase == "INTEGRATING")
        if self.kind == "container":
            if not distributed:
                return {"containers": []}
            repository = self.recipe.request["targetRepository"]["repositoryName"]
            return {
                "containers": [
                    {
                        "region": region,
                        "imageUris": [
                            f"{self.account_id}.dkr.ecr.{region}.amazonaws.com/{repository}:"
                            f"{self.version}-{self.number}"
                        ],
                    }
                    for region in self.distribution_regions
                ]
            }
        if not distributed:
            return {"amis": []}
        amis = []
        for region in self.distribution_regions:
            digest = hashlib.sha256(f"{self.arn}|{region}".encode()).hexdigest()
            template = None
            if self.distribution is not None:
                template = self.distribution.distribution(region).get("amiDistributionConfiguration", {}).get("name")
            amis.append(
                {
                    "region": region,
                    "image": f"ami-{digest[:17]}",
                    "name": ami_name(template, self.name, self.number, self.created_wall),
                    "state": {"status": "AVAILABLE"},
                    "accountId": self.account_id,
                }
            )
        return {"amis": amis}


#: ``scanState.status`` while the build is in each phase: the scan runs in the test workflow, its findings are
#: collected while the image is distributed.
_SCAN_STATUS = {
    "TESTING": "SCANNING",
    "DISTRIBUTING": "COLLECTING",
    "INTEGRATING": "COLLECTING",
    "AVAILABLE": "COMPLETED",
}


def scan_state(status: str) -> dict[str, str]:
    """``scanState`` of a scanned build in ``status``; a build that ended otherwise abandons its scan."""
    if status in ("FAILED", "CANCELLED"):
        return {"status": "ABANDONED", "reason": f"The image reached {status} before the scan completed"}
    return {"status": _SCAN_STATUS.get(status, "PENDING")}


# ---------------------------------------------------------------- workflow executions of a build
def workflow_definition(build: Build, phase: str) -> WorkflowDefinition | None:
    """The managed workflow ``build`` runs in ``phase`` (``None`` for phases without one)."""
    workflow_type = PHASE_WORKFLOW.get(phase)
    return None if workflow_type is None else MANAGED_WORKFLOWS[(workflow_type, build.kind)]


def failed_step_name(build: Build) -> str | None:
    """The step the build's planned failure fails, if it fails in a workflow phase."""
    failure = build.failure
    if failure is None:
        return None
    definition = workflow_definition(build, failure.phase)
    if definition is None:
        return None
    wanted = failure.step or DEFAULT_FAILED_STEP[failure.phase]
    return wanted if definition.step(wanted) is not None else DEFAULT_FAILED_STEP[failure.phase]


def _condition_holds(build: Build, condition: str | None) -> bool:
    if condition == "enhanced_metadata":
        return bool(build.request.get("enhancedImageMetadataEnabled", True))
    if condition == "scanning":
        return build.scanning_enabled
    return True


def workflow_runs(build: Build, now: float) -> list[WorkflowRun]:
    """The build's workflow executions started by clock time ``now``, oldest first."""
    elapsed = now - build.created_at
    cancelled = build.cancelled_at - build.created_at if build.cancelled_at is not None else None
    runs = []
    for phase, start, end in build.phases:
        definition = workflow_definition(build, phase)
        if definition is None:
            continue
        if start > elapsed or (cancelled is not None and start > cancelled):
            break
        runs.append(_run(build, definition, phase, start, end, elapsed, cancelled))
        if build.failure is not None and build.failure.phase == phase:
            break
    return runs


def _run(
    build: Build,
    definition: WorkflowDefinition,
    phase: str,
    start: float,
    end: float,
    elapsed: float,
    cancelled: float | None,
) -> WorkflowRun:
    wall = build.wall_time
    execution_id = workflow_execution_id(build.arn, definition.type)
    failing = build.failure is not None and build.failure.phase == phase
    failed_name = failed_step_name(build) if failing else None
    active = [step for step in definition.steps if _condition_holds(build, step.condition)]
    timed = active[: [step.name for step in active].index(failed_name) + 1] if failed_name else active
    slot = (end - start) / max(len(timed), 1)
    windows = {step.name: (start + index * slot, start + (index + 1) * slot) for index, step in enumerate(timed)}
    seen = min(elapsed, cancelled) if cancelled is not None else elapsed
    over = elapsed >= end and (cancelled is None or cancelled >= end)
    was_cancelled = cancelled is not None and cancelled < end and elapsed >= cancelled
    steps: list[StepRun] = []
    reached = start
    for step in definition.steps:
        run = StepRun(
            step, step_execution_id(execution_id, step.name), "PENDING", None, None, _inputs(build, definition, step)
        )
        steps.append(run)
        if step.name not in windows:
            if failed_name is not None and step not in timed:  # after the failed step: never reached
                if over or was_cancelled:
                    run.status = "SKIPPED"
            elif seen >= reached:  # its condition does not hold: skipped when the workflow gets there
                run.status, run.start, run.end = "SKIPPED", wall(reached), wall(reached)
            elif was_cancelled:
                run.status = "SKIPPED"
            continue
        step_start, step_end = windows[step.name]
        reached = step_end
        if seen < step_start:
            if was_cancelled:
                run.status = "SKIPPED"
            continue
        run.start = wall(step_start)
        if step.name == failed_name and over:
            run.status, run.end, run.message = "FAILED", wall(step_end), _step_message(build, step)
        elif seen >= step_end and step.name != failed_name:
            run.status, run.end, run.outputs = "COMPLETED", wall(step_end), _outputs(build, definition, step)
        elif was_cancelled:
            run.status, run.end, run.message = "CANCELLED", wall(seen), "Image creation was cancelled by the user."
        else:
            run.status = "RUNNING"
    if failing and over:
        for run in steps:
            if run.status == "COMPLETED" and run.definition.rollback:
                run.rollback_status = "COMPLETED"
    status, message, finished = "RUNNING", None, None
    if was_cancelled:
        status, message, finished = "CANCELLED", "Image creation was cancelled by the user.", wall(cancelled or 0.0)
    elif over:
        finished = wall(end)
        if failing:
            status, message = "FAILED", workflow_message(build, execution_id)
        else:
            status = "COMPLETED"
    return WorkflowRun(
        definition=definition,
        arn=(
            f"arn:{build.arn.split(':')[1]}:imagebuilder:{build.region}:aws:workflow/"
            f"{definition.type.lower()}/{definition.name}/{MANAGED_WORKFLOW_VERSION}"
        ),
        execution_id=execution_id,
        image_arn=build.arn,
        status=status,
        start=wall(start),
        end=finished,
        steps=steps,
        message=message,
    )


def _step_message(build: Build, step: StepDefinition) -> str:
    failure = build.failure
    assert failure is not None
    if failure.step_message is not None:
        return failure.step_message
    if failure.reason is not None:
        return failure.reason
    return f"Action {step.action} failed for step {step.name}: the step ended with a non-zero exit status."


def workflow_message(build: Build, execution_id: str) -> str:
    """The message of the workflow a planned failure fails (planned, or naming the failed step and its message)."""
    failure = build.failure
    assert failure is not None
    if failure.workflow_message is not None:
        return failure.workflow_message
    name = failed_step_name(build)
    definition = workflow_definition(build, failure.phase)
    assert name is not None and definition is not None
    step = definition.step(name)
    assert step is not None
    step_id = step_execution_id(execution_id, name)
    return f"Workflow Step Execution ID: {step_id} ({name}) failed with reason: {_step_message(build, step)}"


def _instance_id(build: Build, workflow_type: str) -> str:
    return "i-" + hashlib.sha256(f"{build.arn}|{workflow_type}|instance".encode()).hexdigest()[:17]


def _inputs(build: Build, definition: WorkflowDefinition, step: StepDefinition) -> dict[str, Any]:
    if step.action == "LaunchInstance":
        return {"waitFor": "ssmAgent"}
    if step.action in ("DistributeImage", "ApplyImageConfigurations"):
        return {"regions": list(build.distribution_regions)}
    return {"instanceId": _instance_id(build, definition.type)}


def _outputs(build: Build, definition: WorkflowDefinition, step: StepDefinition) -> dict[str, Any]:
    if step.action == "LaunchInstance":
        return {"instanceId": _instance_id(build, definition.type)}
    if step.action == "CreateImage":
        return {"imageId": "ami-" + hashlib.sha256(f"{build.arn}|output".encode()).hexdigest()[:17]}
    return {"status": "Success"}
