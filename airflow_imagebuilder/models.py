"""The CreateImage request as a validated pydantic model.

``CreateImageRequest.model_validate(<the API's camelCase dict>)`` builds a request (snake_case names are accepted
too) and ``request.model_dump(by_alias=True, exclude_none=True)`` is exactly the keyword dict boto3's
``create_image`` takes.  Every constraint of the CreateImage reference is enforced here, before any API call.

Where botocore's current ``imagebuilder`` model accepts more than the published reference, the model follows the
service (each case is listed in docs/guides/validation.md):

* ``clientToken`` may be up to 64 characters (reference: 36);
* recipe ARNs may use ``x`` wildcards in the version (``.../golden/1.x.x``);
* tag keys may contain digits, spaces, ``@`` and ``=`` (reference pattern ``[a-zA-Z+-=._:/]``);
* ``loggingConfiguration`` (not in the reference) is accepted with the service's ``logGroupName`` rule.

The patterns, limits and field names live in :mod:`~airflow_imagebuilder._decisions.fields`.  The operators
check a task's literal request with these models when the DAG is parsed and the rendered one before the call: the
same code.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from airflow_imagebuilder._decisions.fields import (
    CONTAINER_RECIPE_ARN_PATTERN,
    DISTRIBUTION_CONFIGURATION_ARN_PATTERN,
    EXECUTION_ROLE_PATTERN,
    IMAGE_PIPELINE_ARN_PATTERN,
    IMAGE_RECIPE_ARN_PATTERN,
    INFRASTRUCTURE_CONFIGURATION_ARN_PATTERN,
    LOG_GROUP_NAME_PATTERN,
    MAX_CLIENT_TOKEN,
    MAX_TAG_KEY,
    MAX_TAG_VALUE,
    MAX_TAGS,
    NO_NUL_PATTERN,
    PARALLEL_GROUP_PATTERN,
    PATTERN_RULES,
    REQUEST_FIELDS,
    TAG_KEY_PATTERN,
    WORKFLOW_ARN_PATTERN,
    service_pattern,
)
from airflow_imagebuilder.exceptions import InvalidCreateImageRequest, shorten

__all__ = [
    "CreateImageRequest",
    "EcrConfiguration",
    "ImageLoggingConfiguration",
    "ImageScanningConfiguration",
    "ImageTestsConfiguration",
    "InvalidCreateImageRequest",
    "StartImagePipelineExecutionRequest",
    "WorkflowConfiguration",
    "WorkflowParameter",
]


class _ApiModel(BaseModel):
    """Shared config: camelCase aliases, snake_case accepted, unknown keys rejected, Python regexes, and the
    validators built on first use (most of this module's import time otherwise)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        regex_engine="python-re",  # the service patterns use look-aheads, which the Rust engine lacks
        frozen=True,
        defer_build=True,
    )


class EcrConfiguration(_ApiModel):
    repository_name: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    container_tags: list[Annotated[str, Field(min_length=1, max_length=1024)]] | None = None


class ImageScanningConfiguration(_ApiModel):
    image_scanning_enabled: bool | None = None
    ecr_configuration: EcrConfiguration | None = None


class ImageTestsConfiguration(_ApiModel):
    image_tests_enabled: bool | None = None
    timeout_minutes: Annotated[int, Field(ge=60, le=1440)] | None = None


class WorkflowParameter(_ApiModel):
    name: Annotated[str, Field(min_length=1, max_length=128, pattern=NO_NUL_PATTERN)]
    value: list[Annotated[str, Field(pattern=NO_NUL_PATTERN)]]


class WorkflowConfiguration(_ApiModel):
    workflow_arn: Annotated[str, Field(pattern=WORKFLOW_ARN_PATTERN)]
    parameters: Annotated[list[WorkflowParameter], Field(min_length=1)] | None = None
    parallel_group: Annotated[str, Field(min_length=1, max_length=100, pattern=PARALLEL_GROUP_PATTERN)] | None = None
    on_failure: Literal["CONTINUE", "ABORT"] | None = None


class ImageLoggingConfiguration(_ApiModel):
    log_group_name: Annotated[str, Field(min_length=1, max_length=512, pattern=LOG_GROUP_NAME_PATTERN)] | None = None


TagKey = Annotated[str, Field(min_length=1, max_length=MAX_TAG_KEY, pattern=TAG_KEY_PATTERN)]
TagValue = Annotated[str, Field(max_length=MAX_TAG_VALUE)]


def _tags_are_a_mapping(value: Any) -> Any:
    if value is not None and not isinstance(value, dict):
        raise ValueError(f"must be a mapping of tag key to tag value, got {type(value).__name__}")
    return value


#: The tags of a request: 1 to 50, keys and values by the service's rules (shared by every request model).
Tags = Annotated[dict[TagKey, TagValue], BeforeValidator(_tags_are_a_mapping), Field(min_length=1, max_length=MAX_TAGS)]


class _Request(_ApiModel):
    """A request of the API: ``to_api()`` is exactly the keyword dict of the boto3 call."""

    def to_api(self) -> dict[str, Any]:
        """The boto3 keyword arguments."""
        return self.model_dump(by_alias=True, exclude_none=True)


class CreateImageRequest(_Request):
    """The CreateImage request.  See ``reference/CreateImage-API.txt`` and the module docstring."""

    client_token: Annotated[str, Field(min_length=1, max_length=MAX_CLIENT_TOKEN)]
    infrastructure_configuration_arn: Annotated[str, Field(pattern=INFRASTRUCTURE_CONFIGURATION_ARN_PATTERN)]
    image_recipe_arn: Annotated[str, Field(pattern=IMAGE_RECIPE_ARN_PATTERN)] | None = None
    container_recipe_arn: Annotated[str, Field(pattern=CONTAINER_RECIPE_ARN_PATTERN)] | None = None
    distribution_configuration_arn: Annotated[str, Field(pattern=DISTRIBUTION_CONFIGURATION_ARN_PATTERN)] | None = None
    enhanced_image_metadata_enabled: bool | None = None
    execution_role: Annotated[str, Field(min_length=1, max_length=2048, pattern=EXECUTION_ROLE_PATTERN)] | None = None
    image_scanning_configuration: ImageScanningConfiguration | None = None
    image_tests_configuration: ImageTestsConfiguration | None = None
    tags: Tags | None = None
    workflows: list[WorkflowConfiguration] | None = None
    logging_configuration: ImageLoggingConfiguration | None = None

    @model_validator(mode="after")
    def _exactly_one_recipe(self) -> CreateImageRequest:
        recipes = {"image_recipe_arn": self.image_recipe_arn, "container_recipe_arn": self.container_recipe_arn}
        given = [name for name, value in recipes.items() if value]
        if len(given) != 1:
            raise ValueError(
                "exactly one recipe is required: set either image_recipe_arn or container_recipe_arn"
                + (f" (both were given: {', '.join(given)})" if given else " (neither was given)")
            )
        return self


class StartImagePipelineExecutionRequest(_Request):
    """The StartImagePipelineExecution request, with the service model's rules (tags as for CreateImage)."""

    client_token: Annotated[str, Field(min_length=1, max_length=MAX_CLIENT_TOKEN)]
    image_pipeline_arn: Annotated[str, Field(pattern=IMAGE_PIPELINE_ARN_PATTERN)]
    tags: Tags | None = None


#: API name -> operator argument, for messages.
_ARGUMENTS = {**REQUEST_FIELDS, "imagePipelineArn": "image_pipeline_arn"}


#: Rules of pydantic's type errors in plain words (its own messages end in "unable to interpret input").
_TYPE_RULES = {
    "bool_parsing": "must be a boolean, true or false",
    "bool_type": "must be a boolean, true or false",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
}


def validation_messages(error: ValidationError) -> list[str]:
    """One message per violation, in the words of the operator's arguments: the argument (snake_case) and the keys
    below it as written, the value (shortened) and the rule (a pattern's in plain words and as the service writes
    it; a collection's size, not its items)."""
    messages = []
    for item in error.errors(include_url=False):
        kind, loc, value, ctx = item["type"], list(item["loc"]), item["input"], item.get("ctx", {})
        key = loc[-1:] == ["[key]"]
        loc = loc[:-2] if key else loc
        loc[:1] = [_ARGUMENTS.get(str(part), part) for part in loc[:1]]
        path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)[1:]
        where = f"{path} key {shorten(value)}" if key else f"{path}={shorten(value)}"
        if kind == "missing":
            messages.append(f"{path} is required")
        elif kind == "extra_forbidden":
            messages.append(f"{path} is not a known field (value {shorten(value)})")
        elif kind == "string_pattern_mismatch":
            rule = PATTERN_RULES[ctx["pattern"]]
            shown = "" if ctx["pattern"] == NO_NUL_PATTERN else f" (pattern {service_pattern(ctx['pattern'])})"
            messages.append(f"{where} {rule}{shown}")
        elif kind in _TYPE_RULES:
            messages.append(f"{where} {_TYPE_RULES[kind]}")
        elif kind == "too_long":
            messages.append(f"{path} has {ctx['actual_length']} items; at most {ctx['max_length']} are allowed")
        elif kind == "too_short":
            messages.append(f"{path} has {ctx['actual_length']} items; at least {ctx['min_length']} is required")
        else:
            rule = re.sub(r"^\w+ should ", "must ", item["msg"].removeprefix("Value error, "))
            messages.append(f"{where} {rule}" if loc else rule)
    return messages


def validate_request(data: dict[str, Any], source: str = "Invalid CreateImage request") -> CreateImageRequest:
    """Validate a full CreateImage request, raising :class:`InvalidCreateImageRequest` with every violation."""
    return validate(CreateImageRequest, data, source)


ModelT = TypeVar("ModelT", bound=BaseModel)


def validate(model: type[ModelT], data: dict[str, Any], source: str) -> ModelT:
    """Validate ``data`` as ``model``, raising :class:`InvalidCreateImageRequest` with every violation."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InvalidCreateImageRequest(validation_messages(error), source) from None
