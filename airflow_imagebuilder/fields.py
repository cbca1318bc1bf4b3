"""The request fields and their rules, without pydantic: what DAG parsing needs.

The patterns are the service's (see :mod:`~airflow_imagebuilder.models`, whose models use them) written for
Python: the service's are ECMA 262 regular expressions (Smithy's ``@pattern`` trait), whose ``$`` matches only at
the end of the input (Python's ``$`` also before a final newline: ``\\Z`` here) and whose ``\\s`` is
:data:`ECMA_SPACE`.
:func:`check_request` and :func:`check_pipeline_request` check a task's literal request at parse time: the shape
most DAG files write (plain strings and booleans, a dict of tags, exactly one recipe) against plain rule tables, a
few times cheaper than building a model; anything else, and any value those rules reject, goes to the model, so
every error message is the model's.  The model's module (pydantic, most of the provider's import time) is loaded
only then.  ``tests/test_models.py`` derives these tables from the models and checks that they agree.
"""

from __future__ import annotations

import re
import sys
from typing import Any

_ARN_PREFIX = r"^arn:aws[^:]*:imagebuilder:[^:]+:(?:[0-9]{12}|aws):"
_VERSION_WITH_WILDCARDS = r"(?:[0-9]+|x)\.(?:[0-9]+|x)\.(?:[0-9]+|x)\Z"

IMAGE_RECIPE_ARN_PATTERN = _ARN_PREFIX + r"image-recipe/[a-z0-9-_]+/" + _VERSION_WITH_WILDCARDS
CONTAINER_RECIPE_ARN_PATTERN = _ARN_PREFIX + r"container-recipe/[a-z0-9-_]+/" + _VERSION_WITH_WILDCARDS
DISTRIBUTION_CONFIGURATION_ARN_PATTERN = _ARN_PREFIX + r"distribution-configuration/[a-z0-9-_]+\Z"
INFRASTRUCTURE_CONFIGURATION_ARN_PATTERN = _ARN_PREFIX + r"infrastructure-configuration/[a-z0-9-_]+\Z"
IMAGE_PIPELINE_ARN_PATTERN = _ARN_PREFIX + r"image-pipeline/[a-z0-9-_]+\Z"
EXECUTION_ROLE_PATTERN = r"^(?:arn:aws(?:-[a-z]+)*:iam::[0-9]{12}:role/)?[a-zA-Z_0-9+=,.@\-_/]+\Z"
#: What ECMA 262's ``\s`` matches (WhiteSpace and LineTerminator), as character class contents; Python's ``\s``
#: also matches \x1c-\x1f and \x85 and not \ufeff.
ECMA_SPACE = r"\t\n\v\f\r \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
TAG_KEY_PATTERN = r"^(?!aws:)[a-zA-Z0-9" + ECMA_SPACE + r"_.:/=+\-@]*\Z"
WORKFLOW_ARN_PATTERN = (
    r"^arn:aws(?:-[a-z]+)*:imagebuilder:[a-z]{2,}(?:-[a-z]+)+-[0-9]+:(?:[0-9]{12}|aws(?:-[a-z-]+)?):"
    r"workflow/(build|test|distribution)/[a-z0-9-_]+/"
    r"(?:(?:([0-9]+|x)\.([0-9]+|x)\.([0-9]+|x))|(?:[0-9]+\.[0-9]+\.[0-9]+/[0-9]+))\Z"
)
PARALLEL_GROUP_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-_+#]{0,99}\Z"
LOG_GROUP_NAME_PATTERN = r"^[a-zA-Z0-9\-_/\.]{1,512}\Z"
NO_NUL_PATTERN = r"^[^\x00]*\Z"

MAX_TAGS = 50
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256
#: Longest client token the service takes (the published reference says 36).
MAX_CLIENT_TOKEN = 64

#: Every top-level CreateImage field, API (camelCase) name -> operator keyword (snake_case).
REQUEST_FIELDS: dict[str, str] = {
    "clientToken": "client_token",
    "infrastructureConfigurationArn": "infrastructure_configuration_arn",
    "imageRecipeArn": "image_recipe_arn",
    "containerRecipeArn": "container_recipe_arn",
    "distributionConfigurationArn": "distribution_configuration_arn",
    "enhancedImageMetadataEnabled": "enhanced_image_metadata_enabled",
    "executionRole": "execution_role",
    "imageScanningConfiguration": "image_scanning_configuration",
    "imageTestsConfiguration": "image_tests_configuration",
    "tags": "tags",
    "workflows": "workflows",
    "loggingConfiguration": "logging_configuration",
}
REQUIRED_FIELDS = frozenset({"clientToken", "infrastructureConfigurationArn"})

#: A field's rule for a plain value: ``bool``, or (pattern or None, min length, max length) for a string.
PlainRule = type[bool] | tuple[str | None, int, int]

#: API name -> rule of each top-level field that takes a plain string or boolean.  Patterns are Python regexes
#: matched with ``search()``, as the model's ``regex_engine="python-re"`` does.
PLAIN_FIELD_RULES: dict[str, PlainRule] = {
    "clientToken": (None, 1, MAX_CLIENT_TOKEN),
    "infrastructureConfigurationArn": (INFRASTRUCTURE_CONFIGURATION_ARN_PATTERN, 0, sys.maxsize),
    "imageRecipeArn": (IMAGE_RECIPE_ARN_PATTERN, 0, sys.maxsize),
    "containerRecipeArn": (CONTAINER_RECIPE_ARN_PATTERN, 0, sys.maxsize),
    "distributionConfigurationArn": (DISTRIBUTION_CONFIGURATION_ARN_PATTERN, 0, sys.maxsize),
    "enhancedImageMetadataEnabled": bool,
    "executionRole": (EXECUTION_ROLE_PATTERN, 1, 2048),
}
#: The same for StartImagePipelineExecution, whose tags follow the same rules.
PIPELINE_FIELD_RULES: dict[str, PlainRule] = {
    "clientToken": (None, 1, MAX_CLIENT_TOKEN),
    "imagePipelineArn": (IMAGE_PIPELINE_ARN_PATTERN, 0, sys.maxsize),
}
PIPELINE_REQUIRED_FIELDS = frozenset({"clientToken", "imagePipelineArn"})
#: ``tags``, plainly: a dict of 1 to :data:`MAX_TAGS` entries, each key and value a string under its rule.
TAG_KEY_RULE: tuple[str | None, int, int] = (TAG_KEY_PATTERN, 1, MAX_TAG_KEY)
TAG_VALUE_RULE: tuple[str | None, int, int] = (None, 0, MAX_TAG_VALUE)


#: Patterns compiled so far: each on its first use (about 0.15 ms each), so a DAG file pays only for the fields
#: it sets literally.
_compiled: dict[str, re.Pattern[str]] = {}


def check_request(data: dict[str, Any], source: str = "CreateImage request") -> None:
    """Raise what :func:`~airflow_imagebuilder.models.validate_request` raises for ``data``, without returning a
    request (DAG parsing checks every task's literal request fields with this)."""
    if not plainly_valid(data):
        from airflow_imagebuilder.models import validate_request

        validate_request(data, source)


def check_pipeline_request(data: dict[str, Any], source: str) -> None:
    """Raise what validating ``data`` as a StartImagePipelineExecution request raises, without returning one."""
    if not _plain_fields(data, PIPELINE_FIELD_RULES, PIPELINE_REQUIRED_FIELDS):
        from airflow_imagebuilder.models import StartImagePipelineExecutionRequest, validate

        validate(StartImagePipelineExecutionRequest, data, source)


def plainly_valid(data: dict[str, Any]) -> bool:
    """True when the CreateImage request ``data`` sets every required field, plain values only (ASCII strings,
    booleans, a dict of tags), each passing its field's rule, and exactly one recipe (the model's one rule across
    fields); False means "let the model decide", not "invalid"."""
    recipes = ("imageRecipeArn" in data) + ("containerRecipeArn" in data)
    return recipes == 1 and _plain_fields(data, PLAIN_FIELD_RULES, REQUIRED_FIELDS)


def _plain_fields(data: dict[str, Any], rules: dict[str, PlainRule], required: frozenset[str]) -> bool:
    if not required.issubset(data):
        return False
    for name, value in data.items():
        rule = rules.get(name)
        if rule is bool:
            if type(value) is not bool:
                return False
        elif rule is not None:
            if not plain_string(value, rule):
                return False
        elif name != "tags" or not plain_tags(value):
            return False
    return True


def plain_tags(tags: Any) -> bool:
    """True when ``tags`` is a dict of 1 to :data:`MAX_TAGS` ASCII keys and values, each passing its rule."""
    return (
        type(tags) is dict
        and 1 <= len(tags) <= MAX_TAGS
        and all(plain_string(key, TAG_KEY_RULE) and plain_string(value, TAG_VALUE_RULE) for key, value in tags.items())
    )


def plain_string(value: Any, rule: tuple[str | None, int, int]) -> bool:
    """True when ``value`` is an ASCII string of the rule's length whose pattern (if any) matches."""
    if type(value) is not str or not value.isascii():  # the model rejects lone surrogates; ASCII has none
        return False
    pattern, low, high = rule
    if not low <= len(value) <= high:
        return False
    if pattern is None:
        return True
    compiled = _compiled.get(pattern)
    if compiled is None:
        compiled = _compiled[pattern] = re.compile(pattern)
    return compiled.search(value) is not None
