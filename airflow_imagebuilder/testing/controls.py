"""The emulator's controls, each written once: a method of :class:`~.emulator.ImageBuilderEmulator` marked with
:func:`control`.

A control is what a test does to the emulated service beyond the service's own API: inject faults, start an
outage, deny an access key, hold or fail builds, plan scan findings, move the clock, read the journal.  The method
is the control's name, arguments (types and defaults), docstring and behaviour; :func:`control` adds the route of
the control API that runs it for another process (``/_emulator/<path>``) and the command-line options that apply
it when the emulator starts.  From these entries come :class:`~.emulator.EmulatorControl`'s methods
(:func:`remote_methods`), the control API (:func:`http_actions`) and the command line (``__main__.py``), so a new
control is one marked method.

Over the control API a call's arguments are its JSON body, by name, and the answer is the method's result as JSON
(dataclasses as objects): ``{"ok": true}`` when there is none, ``{<reply>: result}`` where the control names a
``reply`` member.  The command-line parsers below turn an option's text into the control's keyword arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from airflow_imagebuilder.testing.resources import PHASES
from airflow_imagebuilder.testing.service import DENIED_CODE, OUTAGE_MODES

#: Where the control API's routes are.
CONTROL_PREFIX = "/_emulator/"
#: Seconds :class:`~.emulator.EmulatorControl` waits for an answer, beyond what the control itself may wait.
CONTROL_TIMEOUT = 10.0

Method = TypeVar("Method", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True)
class Option:
    """A command-line option that applies a control when the emulator starts.

    :param flag: the option, e.g. ``--fault``.
    :param help: its ``--help`` text.
    :param parse: the option's text to the control's keyword arguments (raising ``argparse.ArgumentTypeError``);
        None for a switch that takes no value and calls the control without arguments.
    :param metavar: how ``--help`` shows the value.
    :param repeat: each time the option is given, the control is applied once; otherwise the last one counts.
    """

    flag: str
    help: str
    parse: Callable[[str], dict[str, Any]] | None = None
    metavar: str | None = None
    repeat: bool = False

    @property
    def dest(self) -> str:
        """The option's attribute in the parsed arguments."""
        return self.flag.lstrip("-").replace("-", "_")


@dataclasses.dataclass(frozen=True)
class Control:
    """One control: the emulator's method, the control API route that runs it, the options that apply it at start.

    :param function: the method of the emulator class: name, arguments, docstring and behaviour.
    :param http_method: the HTTP method of its route.
    :param path: its route below :data:`CONTROL_PREFIX`.
    :param reply: the member of the control API's answer holding the result (``{"released": 3}``); when None the
        answer is the result itself, ``{"ok": true}`` for none.
    :param options: the command-line options that apply it at start-up (none for controls that only read).
    :param waits: the argument holding the seconds the control may take to answer, which the client adds to
        :data:`CONTROL_TIMEOUT`.
    """

    function: Callable[..., Any]
    http_method: str
    path: str
    reply: str | None = None
    options: tuple[Option, ...] = ()
    waits: str | None = None

    @property
    def name(self) -> str:
        return self.function.__name__


def control(
    http_method: str, path: str, *options: Option, reply: str | None = None, waits: str | None = None
) -> Callable[[Method], Method]:
    """Mark an emulator method as a control run by ``http_method /_emulator/<path>`` and applied by ``options``.

    The method itself is unchanged; :func:`controls_of` finds it (see :class:`Control` for the arguments).
    """

    def mark(function: Method) -> Method:
        function.control = Control(function, http_method, path, reply, options, waits)  # type: ignore[attr-defined]
        return function

    return mark


def controls_of(emulator_class: type) -> list[Control]:
    """The controls of an emulator class, in the order they are written (a base class's first)."""
    found: dict[str, Control] = {}
    for cls in reversed(emulator_class.__mro__):
        for member in vars(cls).values():
            entry = getattr(member, "control", None)
            if isinstance(entry, Control):
                found[entry.name] = entry
    return list(found.values())


def to_json(value: Any) -> Any:
    """A control's arguments or result as JSON values: dataclasses and mappings as objects, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return {key: to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    return value


def http_actions(emulator: object) -> dict[tuple[str, str], Callable[[dict[str, Any]], Any]]:
    """The control API of ``emulator``: (HTTP method, path) to a call of the control with the body's arguments."""
    return {
        (entry.http_method, entry.path): functools.partial(_answer, getattr(emulator, entry.name), entry.reply)
        for entry in controls_of(type(emulator))
    }


def _answer(method: Callable[..., Any], reply: str | None, body: dict[str, Any]) -> Any:
    result = to_json(method(**body))
    return result if reply is None else {reply: result}


def remote_methods(emulator_class: type) -> dict[str, Callable[..., Any]]:
    """Methods that run each control of ``emulator_class`` through the control API, by name.

    Each takes the arguments of the emulator's method and has its docstring; its object's ``_call(http_method,
    path, body, timeout)`` sends the request and returns the decoded answer.
    """
    return {entry.name: _remote_method(entry) for entry in controls_of(emulator_class)}


def _remote_method(entry: Control) -> Callable[..., Any]:
    signature = inspect.signature(entry.function)
    answers_nothing = signature.return_annotation in (None, "None")

    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs)
        body: dict[str, Any] = {}
        for name, value in list(bound.arguments.items())[1:]:
            if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                body |= value
            else:
                body[name] = value
        timeout = CONTROL_TIMEOUT
        if entry.waits is not None:
            bound.apply_defaults()
            timeout += float(bound.arguments[entry.waits])
        answer = self._call(entry.http_method, entry.path, to_json(body), timeout)
        if entry.reply is not None:
            return answer[entry.reply]
        return None if answers_nothing else answer

    functools.update_wrapper(call, entry.function)  # name, docstring and (through __wrapped__) the signature
    call.__qualname__ = f"EmulatorControl.{entry.name}"
    call.__doc__ = (
        f"{inspect.getdoc(entry.function)}\n\nThrough the control API (``{entry.http_method} {CONTROL_PREFIX}"
        f"{entry.path}``): records come back as dictionaries of their fields."
    )
    return call


# ---------------------------------------------------------------- command-line parsers of the options
def parse_fault(text: str) -> dict[str, Any]:
    """``OPERATION:CODE[:key=value,...]`` or ``OPERATION:drop[:...]`` / ``OPERATION:latency=S`` as Fault fields.

    Examples: ``GetImage:CallRateLimitExceededException:count=3``, ``*:ServiceUnavailableException:probability=0.1``,
    ``CreateImage:drop:count=1``, ``GetImage:latency=5:count=1``.
    """
    operation, _, rest = text.partition(":")
    if not operation or not rest:
        raise argparse.ArgumentTypeError(f"--fault {text!r}: expected OPERATION:CODE[:key=value,...]")
    fault: dict[str, Any] = {"operation": operation}
    for part in rest.replace(",", ":").split(":"):
        key, has_value, value = part.partition("=")
        if not has_value:
            if key == "drop":
                fault["drop_response"] = True
            else:
                fault["code"] = key
        elif key in ("count", "status"):
            fault[key] = int(value)
        elif key in ("probability", "latency"):
            fault[key] = float(value)
        elif key == "message":
            fault[key] = value
        else:
            raise argparse.ArgumentTypeError(f"--fault {text!r}: unknown field {key!r}")
    return fault


def parse_fault_mix(text: str) -> dict[str, Any]:
    """``ERROR_SHARE[,DROP_SHARE]`` as keyword arguments of ``add_fault_mix``."""
    error_share, _, drop_share = text.partition(",")
    try:
        return {"error_share": float(error_share), "drop_share": float(drop_share or 0.0)}
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--fault-mix {text!r}: {error}") from error


def parse_outage(text: str) -> dict[str, Any]:
    """An outage mode as keyword arguments of ``start_outage``."""
    if text not in OUTAGE_MODES:
        raise argparse.ArgumentTypeError(f"--outage {text!r}: choose from {', '.join(OUTAGE_MODES)}")
    return {"mode": text}


def parse_denied_key(text: str) -> dict[str, Any]:
    """``ACCESS_KEY_ID[:CODE]`` of a denied access key, as keyword arguments of ``deny_access_key``."""
    key, _, code = text.partition(":")
    if not key:
        raise argparse.ArgumentTypeError(f"--deny-access-key {text!r}: expected ACCESS_KEY_ID[:CODE]")
    return {"access_key_id": key, "code": code or DENIED_CODE}


def parse_failure(text: str) -> dict[str, Any]:
    """``PHASE[:REASON]`` of a planned build failure, as keyword arguments of ``fail_next_builds``."""
    phase, _, reason = text.partition(":")
    if phase not in PHASES:
        raise argparse.ArgumentTypeError(f"--fail-next-build {text!r}: phase must be one of {', '.join(PHASES)}")
    return {"phase": phase, "reason": reason} if reason else {"phase": phase}


def parse_json_body(option: str) -> Callable[[str], dict[str, Any]]:
    """A parser of a JSON object (or ``@file`` holding one): the body the control API takes."""

    def parse(text: str) -> dict[str, Any]:
        try:
            if text.startswith("@"):
                with open(text[1:], encoding="utf-8") as handle:
                    text = handle.read()
            value = json.loads(text)
        except (OSError, ValueError) as error:
            raise argparse.ArgumentTypeError(f"{option}: {error}") from error
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError(f"{option}: expected a JSON dict, got {text!r}")
        return value

    return parse
