"""The request fields and the service's patterns and limits, which :mod:`~airflow_imagebuilder.models` enforces.

The patterns are the service's written for Python: the service's are ECMA 262 regular expressions (Smithy's
``@pattern`` trait), whose ``$`` matches only at the end of the input (Python's ``$`` also before a final
newline: ``\\Z`` here) and whose ``\\s`` is :data:`ECMA_SPACE`.  ``tests/test_models.py`` holds them to
botocore's.
"""

from __future__ import annotations

_ARN_PREFIX = r"^arn:aws[^:]*:imagebuilder:[^:]+:(?:[0-9]{12}|aws):"
_VERSION_WITH_WILDCARDS = r"(?:[0-9]+|x)\.(?:[0-9]+|x)\.(?:[0-9]+|x)\Z"

IMAGE_RECIPE_ARN_PATTERN = _ARN_PREFIX + r"image-recipe/[a-z0-9-_]+/" + _VERSION_WITH_WILDCARDS
CONTAINER_RECIPE_ARN_PATTERN = _ARN_PREFIX + r"container-recipe/[a-z0-9-_]+/" + _VERSION_WITH_WILDCARDS
DISTRIBUTION_CONFIGURATION_ARN_PATTERN = _ARN_PREFIX + r"distribution-configuration/[a-z0-9-_]+\Z"
INFRASTRUCTURE_CONFIGURATION_ARN_PATTERN = _ARN_PREFIX + r"infrastructure-configuration/[a-z0-9-_]+\Z"
IMAGE_PIPELINE_ARN_PATTERN = _ARN_PREFIX + r"image-pipeline/[a-z0-9-_]+\Z"
#: GetImage's ARN: an image build version (``.../image/<name>/<x.y.z>/<build>``), or an image version (``x``
#: wildcards allowed), which names its newest build.
IMAGE_BUILD_VERSION_ARN_PATTERN = (
    r"^arn:aws[^:]*:imagebuilder:[^:]+:(?:[0-9]{12}|aws(?:-[a-z-]+)?):image/[a-z0-9-_]+/"
    r"(?:(?:([0-9]+|x)\.([0-9]+|x)\.([0-9]+|x))|(?:[0-9]+\.[0-9]+\.[0-9]+/[0-9]+))\Z"
)
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

#: Each pattern's rule in plain words, for messages; :func:`service_pattern` shows the pattern beside it, except
#: the NUL rule's, which is stricter than the service model's unanchored ``[^\x00]+``.
PATTERN_RULES: dict[str, str] = {
    IMAGE_RECIPE_ARN_PATTERN: "must be an image recipe ARN",
    CONTAINER_RECIPE_ARN_PATTERN: "must be a container recipe ARN",
    DISTRIBUTION_CONFIGURATION_ARN_PATTERN: "must be a distribution configuration ARN",
    INFRASTRUCTURE_CONFIGURATION_ARN_PATTERN: "must be an infrastructure configuration ARN",
    IMAGE_PIPELINE_ARN_PATTERN: "must be an image pipeline ARN",
    IMAGE_BUILD_VERSION_ARN_PATTERN: "must be an image build version ARN: "
    "arn:<partition>:imagebuilder:<region>:<account>:image/<name>/<x.y.z>/<build>",
    EXECUTION_ROLE_PATTERN: "must be an IAM role name or ARN",
    TAG_KEY_PATTERN: "must not start with 'aws:' and may contain only letters, digits, spaces and _.:/=+-@",
    WORKFLOW_ARN_PATTERN: "must be the ARN of a build, test or distribution workflow version",
    PARALLEL_GROUP_PATTERN: "must start with a letter or digit, then contain only letters, digits and -_+#",
    LOG_GROUP_NAME_PATTERN: "may contain only letters, digits and -_/.",
    NO_NUL_PATTERN: "must not contain a NUL character",
}


def service_pattern(pattern: str) -> str:
    """A pattern above as the service model writes it (ECMA 262: ``$`` and ``\\s``), as its API reference shows it."""
    return pattern.replace(r"\Z", "$").replace(ECMA_SPACE, r"\s")


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
