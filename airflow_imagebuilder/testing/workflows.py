"""The AWS managed workflows the service runs for a build, step by step, and what their executions look like.

A build runs one workflow per workflow phase (:data:`PHASE_WORKFLOW`): ``build-image`` (or ``build-container``)
while BUILDING, ``test-image`` (``test-container``) while TESTING when tests are enabled, and ``distribute-image``
while DISTRIBUTING.  Steps whose condition does not hold (image metadata collection, scan findings collection) are
SKIPPED, as in the managed workflow documents.  How a build's executions unfold on its clock is computed beside
the build, in ``resources.py`` (:func:`~.resources.workflow_runs`); this module holds the definitions, the ids and
the shapes of executions and steps.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import uuid
from typing import Any

from airflow_imagebuilder.testing.clock import timestamp

#: The workflow type a lifecycle phase runs; other phases run no workflow.
PHASE_WORKFLOW: dict[str, str] = {"BUILDING": "BUILD", "TESTING": "TEST", "DISTRIBUTING": "DISTRIBUTION"}
#: Version of every managed workflow the emulator runs (``workflow/<type>/<name>/<version>``).
MANAGED_WORKFLOW_VERSION = "1.0.0/1"


@dataclasses.dataclass(frozen=True)
class StepDefinition:
    """One step of a workflow document: ``name``, ``action``, ``onFailure`` and its timeout.

    :param condition: ``"enhanced_metadata"`` or ``"scanning"`` for steps that run only when the image enables
        enhanced metadata collection or image scanning; ``None`` for steps that always run.
    :param rollback: whether the action undoes its work when a later step fails the workflow.
    """

    name: str
    action: str
    description: str
    timeout_seconds: int
    on_failure: str = "Abort"
    condition: str | None = None
    rollback: bool = False


@dataclasses.dataclass(frozen=True)
class WorkflowDefinition:
    """An AWS managed workflow: its type, name and steps."""

    type: str
    name: str
    steps: tuple[StepDefinition, ...]

    def step(self, name: str) -> StepDefinition | None:
        """The step called ``name``, if the workflow has one."""
        return next((step for step in self.steps if step.name == name), None)


_LAUNCH_BUILD = StepDefinition(
    "LaunchBuildInstance", "LaunchInstance", "Launches the build instance.", 3600, rollback=True
)
_APPLY_BUILD = StepDefinition(
    "ApplyBuildComponents", "ExecuteComponents", "Runs the build components of the recipe.", 43200
)
_TERMINATE_BUILD = StepDefinition(
    "TerminateBuildInstance", "TerminateInstance", "Terminates the build instance.", 1800, on_failure="Continue"
)
_LAUNCH_TEST = StepDefinition(
    "LaunchTestInstance", "LaunchInstance", "Launches the test instance.", 3600, rollback=True
)
_APPLY_TEST = StepDefinition(
    "ApplyTestComponents", "ExecuteComponents", "Runs the test components of the recipe.", 43200
)
_TERMINATE_TEST = StepDefinition(
    "TerminateTestInstance", "TerminateInstance", "Terminates the test instance.", 1800, on_failure="Continue"
)

#: The managed workflows per (workflow type, recipe kind).
MANAGED_WORKFLOWS: dict[tuple[str, str], WorkflowDefinition] = {
    ("BUILD", "image"): WorkflowDefinition(
        "BUILD",
        "build-image",
        (
            _LAUNCH_BUILD,
            _APPLY_BUILD,
            StepDefinition(
                "InventoryCollection",
                "CollectImageMetadata",
                "Collects the build instance's inventory (enhanced image metadata).",
                1800,
                condition="enhanced_metadata",
                rollback=True,
            ),
            StepDefinition(
                "RunSanityTest", "RunCommand", "Checks that the build instance still boots and answers.", 3600
            ),
            StepDefinition("CreateOutputAMI", "CreateImage", "Creates the output AMI from the build instance.", 43200),
            _TERMINATE_BUILD,
        ),
    ),
    ("BUILD", "container"): WorkflowDefinition(
        "BUILD",
        "build-container",
        (
            _LAUNCH_BUILD,
            StepDefinition(
                "BootstrapBuildInstance",
                "BootstrapInstanceForContainer",
                "Installs Docker and the AWS CLI on the build instance.",
                3600,
            ),
            _APPLY_BUILD,
            _TERMINATE_BUILD,
        ),
    ),
    ("TEST", "image"): WorkflowDefinition(
        "TEST",
        "test-image",
        (
            _LAUNCH_TEST,
            StepDefinition(
                "CollectImageScanFindings",
                "CollectImageScanFindings",
                "Collects the Amazon Inspector findings of the test instance.",
                7200,
                condition="scanning",
            ),
            _APPLY_TEST,
            _TERMINATE_TEST,
        ),
    ),
    ("TEST", "container"): WorkflowDefinition(
        "TEST",
        "test-container",
        (
            _LAUNCH_TEST,
            StepDefinition(
                "BootstrapTestInstance",
                "BootstrapInstanceForContainer",
                "Installs Docker and the AWS CLI on the test instance.",
                3600,
            ),
            _APPLY_TEST,
            _TERMINATE_TEST,
        ),
    ),
}
_DISTRIBUTE = WorkflowDefinition(
    "DISTRIBUTION",
    "distribute-image",
    (
        StepDefinition("DistributeImage", "DistributeImage", "Copies the output image to each target region.", 21600),
        StepDefinition(
            "ApplyImageConfigurations",
            "ApplyImageConfigurations",
            "Applies launch template, license and SSM parameter configurations.",
            21600,
        ),
    ),
)
MANAGED_WORKFLOWS[("DISTRIBUTION", "image")] = MANAGED_WORKFLOWS[("DISTRIBUTION", "container")] = _DISTRIBUTE

#: The step a planned failure fails when it names none.
DEFAULT_FAILED_STEP: dict[str, str] = {
    "BUILDING": "ApplyBuildComponents",
    "TESTING": "ApplyTestComponents",
    "DISTRIBUTING": "DistributeImage",
}


def phase_steps(phase: str) -> tuple[str, ...]:
    """Names of the steps a planned failure in ``phase`` may fail (of the image or the container workflow)."""
    workflow_type = PHASE_WORKFLOW[phase]
    names: list[str] = []
    for kind in ("image", "container"):
        names += [step.name for step in MANAGED_WORKFLOWS[(workflow_type, kind)].steps if step.name not in names]
    return tuple(names)


def _hex_uuid(text: str) -> str:
    return str(uuid.UUID(hashlib.sha256(text.encode()).hexdigest()[:32]))


def workflow_execution_id(build_arn: str, workflow_type: str) -> str:
    """The id of a build's workflow execution of one type: ``wf-<uuid>``, stable per build."""
    return f"wf-{_hex_uuid(f'{build_arn}|{workflow_type}')}"


def step_execution_id(workflow_id: str, step_name: str) -> str:
    """The id of one step execution of a workflow execution: ``step-<uuid>``."""
    return f"step-{_hex_uuid(f'{workflow_id}|{step_name}')}"


def clip(text: str, limit: int) -> str:
    """``text`` cut to the service's ``limit`` of characters, ending in ``...`` when cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclasses.dataclass
class StepRun:
    """One step execution as seen at one moment."""

    definition: StepDefinition
    execution_id: str
    status: str
    start: dt.datetime | None
    end: dt.datetime | None
    inputs: dict[str, Any]
    outputs: dict[str, Any] | None = None
    message: str | None = None
    rollback_status: str | None = None

    def metadata(self) -> dict[str, Any]:
        """The ``WorkflowStepMetadata`` structure of ListWorkflowStepExecutions."""
        described: dict[str, Any] = {
            "stepExecutionId": self.execution_id,
            "name": self.definition.name,
            "description": self.definition.description,
            "action": self.definition.action,
            "status": self.status,
            "inputs": json.dumps(self.inputs),
            "attemptNumber": 1,
            "maxAttempts": 1,
        }
        if self.rollback_status is not None:
            described["rollbackStatus"] = self.rollback_status
        if self.message is not None:
            described["message"] = clip(self.message, 500)
        if self.outputs is not None:
            described["outputs"] = json.dumps(self.outputs)
        if self.start is not None:
            described["startTime"] = timestamp(self.start)
        if self.end is not None:
            described["endTime"] = timestamp(self.end)
        return described


@dataclasses.dataclass
class WorkflowRun:
    """One workflow execution of a build as seen at one moment, with its steps."""

    definition: WorkflowDefinition
    arn: str
    execution_id: str
    image_arn: str
    status: str
    start: dt.datetime
    end: dt.datetime | None
    steps: list[StepRun]
    message: str | None = None

    def counts(self) -> dict[str, int]:
        """``totalStepCount`` and the succeeded, failed and skipped totals."""
        statuses = [step.status for step in self.steps]
        return {
            "totalStepCount": len(self.definition.steps),
            "totalStepsSucceeded": statuses.count("COMPLETED"),
            "totalStepsFailed": statuses.count("FAILED"),
            "totalStepsSkipped": statuses.count("SKIPPED"),
        }

    def metadata(self) -> dict[str, Any]:
        """The ``WorkflowExecutionMetadata`` structure of ListWorkflowExecutions."""
        described: dict[str, Any] = {
            "workflowBuildVersionArn": self.arn,
            "workflowExecutionId": self.execution_id,
            "type": self.definition.type,
            "status": self.status,
            **self.counts(),
            "startTime": timestamp(self.start),
            "retried": False,
        }
        if self.message is not None:
            described["message"] = clip(self.message, 500)
        if self.end is not None:
            described["endTime"] = timestamp(self.end)
        return described

    def describe(self) -> dict[str, Any]:
        """The body of GetWorkflowExecution."""
        described = self.metadata() | {"imageBuildVersionArn": self.image_arn}
        del described["retried"]  # not a member of GetWorkflowExecution's response
        return described

    def visible_steps(self) -> list[StepRun]:
        """The steps ListWorkflowStepExecutions lists: those reached so far (not PENDING)."""
        return [step for step in self.steps if step.status != "PENDING"]

    def describe_step(self, step: StepRun) -> dict[str, Any]:
        """The body of GetWorkflowStepExecution for one of this workflow's steps."""
        return step.metadata() | {
            "workflowBuildVersionArn": self.arn,
            "workflowExecutionId": self.execution_id,
            "imageBuildVersionArn": self.image_arn,
            "onFailure": step.definition.on_failure,
            "timeoutSeconds": step.definition.timeout_seconds,
        }
