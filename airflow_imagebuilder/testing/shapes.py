"""Checks a JSON value against a shape of botocore's own ``imagebuilder`` service model.

botocore's ``ParamValidator`` checks types, required members and lengths but not patterns or enums, and it is
only wired to requests.  This checker covers both directions with every constraint the model states, so the
emulator validates requests the way the service does and the tests prove every response is one botocore could
have received from AWS (no invented members, enums and patterns respected).
"""

from __future__ import annotations

import functools
import re
from typing import Any

import botocore.session
from botocore.model import Shape

from airflow_imagebuilder._decisions.fields import ECMA_SPACE


@functools.lru_cache(maxsize=1)
def service_model():  # type: ignore[no-untyped-def]
    """The installed botocore's ``imagebuilder`` service model."""
    return botocore.session.get_session().get_service_model("imagebuilder")


@functools.lru_cache(maxsize=1)
def aws_regions() -> dict[str, str]:
    """Every AWS region botocore knows, with its partition (``{"us-east-1": "aws", "cn-north-1": "aws-cn", ...}``)."""
    endpoints = botocore.session.get_session().get_data("endpoints")
    return {region: partition["partition"] for partition in endpoints["partitions"] for region in partition["regions"]}


#: ECMA 262's character class escapes, as Python character class contents.
_ECMA_CLASSES = {"s": ECMA_SPACE, "w": "A-Za-z0-9_", "d": "0-9"}


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(python_pattern(pattern))


def python_pattern(pattern: str) -> str:
    """A service model pattern (ECMA 262, as Smithy's ``@pattern`` trait says) as a Python regex for ``search()``.

    Where the two dialects differ: ECMA's ``$`` (without the ``m`` flag) matches only at the end of the input,
    Python's also before a final newline, so ``$`` becomes ``\\Z``; ECMA's ``.`` matches no line terminator
    (``\\r``, ``\\u2028`` and ``\\u2029`` included); ECMA's ``\\s``, ``\\w`` and ``\\d`` (and their complements)
    are narrower than Python's, which match other Unicode spaces, letters and digits, so they become their ECMA sets.
    What reads differently and has no simple Python form (a complement inside a class, ``[]`` and ``[^]``) raises
    ValueError rather than being matched another way.
    """
    out: list[str] = []
    index, in_class, after_set = 0, False, False
    while index < len(pattern):
        char = pattern[index]
        index += 1
        was_after_set, after_set = after_set, False
        if char == "\\" and index < len(pattern):
            escape = pattern[index]
            index += 1
            if escape.lower() not in _ECMA_CLASSES:
                out.append(char + escape)
            elif in_class and escape.isupper():
                raise ValueError(f"pattern {pattern!r}: \\{escape} inside a character class is not translated")
            elif in_class:
                out.append(_ECMA_CLASSES[escape])
                after_set = True
            else:
                out.append(f"[{'^' if escape.isupper() else ''}{_ECMA_CLASSES[escape.lower()]}]")
        elif in_class:
            in_class = char != "]"
            out.append("\\-" if char == "-" and was_after_set else char)  # ECMA: a literal "-" after a class escape
        elif char == "[":
            negated = pattern.startswith("^", index)
            if pattern.startswith("]", index + negated):
                raise ValueError(f"pattern {pattern!r}: an empty class ([] or [^]) is not translated")
            in_class = True
            out.append(char)
        else:
            out.append({"$": r"\Z", ".": r"[^\n\r\u2028\u2029]"}.get(char, char))
    return "".join(out)


def operation_shapes(operation: str) -> tuple[Shape, Shape]:
    """Input and output shapes of one operation."""
    op = service_model().operation_model(operation)
    return op.input_shape, op.output_shape


def check_shape(value: Any, shape: Shape, path: str | None = None) -> list[str]:
    """Return every violation of ``shape`` by the JSON value ``value`` (empty when it conforms).

    Each violation names the member path, the value and the rule, e.g.
    ``tags.aws:x: 'aws:x' does not match pattern ^(?!aws:)...``.  Paths start with ``path`` (the shape's
    name unless given; ``""`` gives paths like ``.tags``).
    """
    errors: list[str] = []
    _check(value, shape, shape.name if path is None else path, errors)
    return errors


#: The JSON value each container or string shape takes, and how a message names it.
_JSON_TYPES: dict[str, tuple[type, str]] = {
    "structure": (dict, "an object"),
    "list": (list, "a list"),
    "map": (dict, "a map"),
    "string": (str, "a string"),
}


def _check(value: Any, shape: Shape, path: str, errors: list[str]) -> None:
    kind = shape.type_name
    meta = shape.metadata
    if kind in _JSON_TYPES and not isinstance(value, _JSON_TYPES[kind][0]):
        errors.append(f"{path}: expected {_JSON_TYPES[kind][1]}, got {type(value).__name__} {value!r:.80}")
        return
    if kind == "structure":
        members = shape.members
        for name in value:
            if name not in members:
                errors.append(f"{path}.{name}: not a member of {shape.name}")
        for name in shape.required_members:
            if name not in value:
                errors.append(f"{path}.{name}: required member is missing")
        for name, member_value in value.items():
            if name in members and member_value is not None:
                _check(member_value, members[name], f"{path}.{name}", errors)
        return
    if kind == "list":
        _check_size(len(value), meta, path, "items", errors)
        for index, item in enumerate(value):
            _check(item, shape.member, f"{path}[{index}]", errors)
        return
    if kind == "map":
        _check_size(len(value), meta, path, "entries", errors)
        for key, item in value.items():
            _check(key, shape.key, f"{path}.<key {key!r}>", errors)
            _check(item, shape.value, f"{path}.{key}", errors)
        return
    if kind == "string":
        _check_size(len(value), meta, path, "characters", errors)
        if "pattern" in meta and not _compiled(meta["pattern"]).search(value):
            errors.append(f"{path}: {value!r} does not match pattern {meta['pattern']}")
        if shape.enum and value not in shape.enum:
            errors.append(f"{path}: {value!r} is not one of {', '.join(shape.enum)}")
        return
    if kind == "boolean":
        if not isinstance(value, bool):
            errors.append(f"{path}: expected a boolean, got {value!r}")
        return
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(f"{path}: expected an integer, got {value!r}")
            return
        if "min" in meta and value < meta["min"]:
            errors.append(f"{path}: {value} is below the minimum {meta['min']}")
        if "max" in meta and value > meta["max"]:
            errors.append(f"{path}: {value} is above the maximum {meta['max']}")
        return
    if kind in ("timestamp", "double", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            errors.append(f"{path}: expected a {kind}, got {value!r}")
        return
    errors.append(f"{path}: shape type {kind} is not checked")  # pragma: no cover - not in our operations


def _check_size(size: int, meta: dict[str, Any], path: str, unit: str, errors: list[str]) -> None:
    if "min" in meta and size < meta["min"]:
        errors.append(f"{path}: has {size} {unit}, fewer than the minimum {meta['min']}")
    if "max" in meta and size > meta["max"]:
        errors.append(f"{path}: has {size} {unit}, more than the maximum {meta['max']}")
