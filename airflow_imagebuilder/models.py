"""The CreateImage request as a validated pydantic model.

``CreateImageRequest.model_validate(<the API's camelCase dict>)`` builds a request (snake_case names are accepted
too) and ``request.model_dump(by_alias=True, exclude_none=True)`` is exactly the keyword dict boto3's
``create_image`` takes.  Every constraint of the CreateImage reference is enforced here, before any API call.

Where botocore's current ``imagebuilder`` model accepts more than the published reference, the model follows the
service (each case is listed in the README under "Validation"):

* ``clientToken`` may be up to 64 characters (reference: 36);
* recipe ARNs may use ``x`` wildcards in the version (``.../golden/1.x.x``);
* tag keys may contain digits, spaces, ``@`` and ``=`` (reference pattern ``[a-zA-Z+-=._:/]``);
* ``loggingConfiguration`` (not in the reference) is accepted with the service's ``logGroupName`` rule.
"""

from __future__ import annotations

import re
import sys
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo

from airflow_imagebuilder.exceptions import InvalidCreateImageRequest, shorten

_ARN_PREFIX = r"^arn:aws[^:]*:imagebuilder:[^:]+:(?:[0-9]{12}|aws):"
_VERSION_WITH_WILDCARDS = r"(?:[0-9]+|x)\.(?:[0-9]+|x)\.(?:[0-9]+|x)$"

IMAGE_RECIPE_ARN_PATTERN = _ARN_PREFIX + r"image-recipe/[a-z0-9-_]+/" + _VERSION_WITH_WILDCARDS
CONTAINER_RECIPE_ARN_PATTERN = _ARN_PREFIX + r"container-recipe/[a-z0-9-_]+/" + _VERSION_WITH_WILDCARDS
DISTRIBUTION_CONFIGURATION_ARN_PATTERN = _ARN_PREFIX + r"distribution-configuration/[a-z0-9-_]+$"
INFRASTRUCTURE_CONFIGURATION_ARN_PATTERN = _ARN_PREFIX + r"infrastructure-configuration/[a-z0-9-_]+$"
IMAGE_PIPELINE_ARN_PATTERN = _ARN_PREFIX + r"image-pipeline/[a-z0-9-_]+$"
EXECUTION_ROLE_PATTERN = r"^(?:arn:aws(?:-[a-z]+)*:iam::[0-9]{12}:role/)?[a-zA-Z_0-9+=,.@\-_/]+$"
TAG_KEY_PATTERN = r"^(?!aws:)[a-zA-Z0-9\s_.:/=+\-@]*$"
WORKFLOW_ARN_PATTERN = (
    r"^arn:aws(?:-[a-z]+)*:imagebuilder:[a-z]{2,}(?:-[a-z]+)+-[0-9]+:(?:[0-9]{12}|aws(?:-[a-z-]+)?):"
    r"workflow/(build|test|distribution)/[a-z0-9-_]+/"
    r"(?:(?:([0-9]+|x)\.([0-9]+|x)\.([0-9]+|x))|(?:[0-9]+\.[0-9]+\.[0-9]+/[0-9]+))$"
)
PARALLEL_GROUP_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-_+#]{0,99}$"
LOG_GROUP_NAME_PATTERN = r"^[a-zA-Z0-9\-_/\.]{1,512}$"
NO_NUL_PATTERN = r"^[^\x00]*$"

MAX_TAGS = 50


class _ApiModel(BaseModel):
    """Shared config: camelCase aliases, snake_case accepted, unknown keys rejected, Python regexes, and the
    validators built on first use: most of this module's import time otherwise, while DAG parsing seldom needs
    them (see :func:`check_request`)."""

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


TagKey = Annotated[str, Field(min_length=1, max_length=128, pattern=TAG_KEY_PATTERN)]
TagValue = Annotated[str, Field(max_length=256)]


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

    client_token: Annotated[str, Field(min_length=1, max_length=64)]
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
        recipes = {"imageRecipeArn": self.image_recipe_arn, "containerRecipeArn": self.container_recipe_arn}
        given = [name for name, value in recipes.items() if value]
        if len(given) != 1:
            raise ValueError(
                "exactly one recipe is required: set either imageRecipeArn or containerRecipeArn"
                + (f" (both were given: {', '.join(given)})" if given else " (neither was given)")
            )
        return self


class StartImagePipelineExecutionRequest(_Request):
    """The StartImagePipelineExecution request, with the service model's rules (tags as for CreateImage)."""

    client_token: Annotated[str, Field(min_length=1, max_length=64)]
    image_pipeline_arn: Annotated[str, Field(pattern=IMAGE_PIPELINE_ARN_PATTERN)]
    tags: Tags | None = None


#: Every top-level request field, API (camelCase) name -> operator keyword (snake_case).
REQUEST_FIELDS: dict[str, str] = {
    info.alias or name: name for name, info in CreateImageRequest.model_fields.items() if info.alias
}


def validation_messages(error: ValidationError) -> list[str]:
    """One message per violation, naming the field (API name), the value (shortened) and the rule."""
    messages = []
    for item in error.errors(include_url=False):
        location = ".".join(str(part) for part in item["loc"]) or "request"
        rule = item["msg"].removeprefix("Value error, ")
        if item["type"] == "missing":
            messages.append(f"{location}: is required")
        elif item["type"] == "extra_forbidden":
            messages.append(f"{location}: is not a field of CreateImage (value {shorten(item['input'])})")
        elif location == "request":
            messages.append(rule)
        else:
            messages.append(f"{location}={shorten(item['input'])}: {rule}")
    return messages


def validate_request(data: dict[str, Any], source: str = "CreateImage request") -> CreateImageRequest:
    """Validate a full CreateImage request, raising :class:`InvalidCreateImageRequest` with every violation."""
    return validate(CreateImageRequest, data, source)


def check_request(data: dict[str, Any], source: str = "CreateImage request") -> None:
    """Raise what :func:`validate_request` raises for ``data``, without returning a request.

    DAG parsing checks every task's literal request fields, so this is on the parse path of every DAG file.  The
    shape most DAG files write (plain strings and booleans, exactly one recipe) is checked against the model's
    own field rules (:data:`_PLAIN_FIELD_RULES`) without building a model, a few times cheaper; any other shape,
    and any value those rules reject, is validated by the model, so every error is the model's.
    """
    if not _plainly_valid(data):
        validate(CreateImageRequest, data, source)


#: A field's rule for a plain value: ``bool``, or (pattern or None, min length, max length) for a string.
_PlainRule = type[bool] | tuple["re.Pattern[str] | None", int, int]


def _plain_rule(info: FieldInfo) -> _PlainRule | None:
    """The rule of a field that takes a plain string or boolean, read from its definition; None for any other
    field, or a string constraint not known here (the model then validates every request that sets it)."""
    annotation, metadata = info.annotation, list(info.metadata)
    if get_origin(annotation) in (Union, UnionType):
        members = [member for member in get_args(annotation) if member is not NoneType]
        if len(members) != 1:
            return None
        annotation = members[0]
    if get_origin(annotation) is Annotated:
        annotation, *extras = get_args(annotation)
        for extra in extras:
            metadata.extend(extra.metadata if isinstance(extra, FieldInfo) else [extra])
    if annotation is bool and not metadata:
        return bool
    if annotation is not str:
        return None
    pattern, low, high = None, 0, sys.maxsize
    for item in metadata:
        if isinstance(item, annotated_types.MinLen):
            low = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            high = item.max_length
        elif getattr(item, "__dict__", {}).keys() == {"pattern"} and isinstance(item.pattern, str):
            pattern = re.compile(item.pattern)  # the model's regex_engine: Python's re, matched with search()
        else:
            return None
    return pattern, low, high


def _plain_field_rules() -> dict[str, _PlainRule]:
    """API name -> rule of each top-level CreateImage field that takes a plain string or boolean; none at all if
    the model has a validator :func:`_plainly_valid` does not know (the model then checks every request)."""
    decorators = CreateImageRequest.__pydantic_decorators__
    if (
        decorators.model_validators.keys() != {"_exactly_one_recipe"}
        or decorators.field_validators
        or decorators.validators
        or decorators.root_validators
    ):
        return {}
    return {
        info.alias or name: rule
        for name, info in CreateImageRequest.model_fields.items()
        if (rule := _plain_rule(info)) is not None
    }


_PLAIN_FIELD_RULES = _plain_field_rules()
_REQUIRED_FIELDS = frozenset(
    info.alias or name for name, info in CreateImageRequest.model_fields.items() if info.is_required()
)


def _plainly_valid(data: dict[str, Any]) -> bool:
    """True when ``data`` sets every required field, plain values only (ASCII strings, booleans), each passing its
    field's rule, and exactly one recipe (the model's one rule across fields); False means "let the model
    decide", not "invalid"."""
    if not _REQUIRED_FIELDS.issubset(data) or ("imageRecipeArn" in data) == ("containerRecipeArn" in data):
        return False
    for name, value in data.items():
        rule = _PLAIN_FIELD_RULES.get(name)
        if rule is None:
            return False
        if rule is bool:
            if type(value) is not bool:
                return False
        elif type(value) is not str or not value.isascii():  # the model rejects lone surrogates; ASCII has none
            return False
        else:
            pattern, low, high = rule
            if not low <= len(value) <= high or (pattern is not None and pattern.search(value) is None):
                return False
    return True


ModelT = TypeVar("ModelT", bound=BaseModel)


def validate(model: type[ModelT], data: dict[str, Any], source: str) -> ModelT:
    """Validate ``data`` as ``model``, raising :class:`InvalidCreateImageRequest` with every violation."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InvalidCreateImageRequest(validation_messages(error), source) from None
