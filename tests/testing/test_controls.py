"""The emulator's controls are one table, and its constants are the provider's.

A control is one marked method of the emulator class: the Python API, :class:`EmulatorControl`, the control API
and the command line all come from it, so a throwaway control added to the table shows up on each of them.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import airflow_imagebuilder
from airflow_imagebuilder._decisions import diagnostics, states
from airflow_imagebuilder.testing import PHASES, EmulatorControl, ImageBuilderEmulator, ManualClock
from airflow_imagebuilder.testing import events as emulator_events
from airflow_imagebuilder.testing.__main__ import command_line, configured_emulator
from airflow_imagebuilder.testing.controls import Option, control, controls_of, http_actions, remote_methods
from airflow_imagebuilder.testing.findings import SEVERITIES

PACKAGE = Path(airflow_imagebuilder.__file__).parent


class GreetingEmulator(ImageBuilderEmulator):
    """The emulator with one throwaway control more."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.greetings: list[str] = []

    @control(
        "POST",
        "greetings",
        Option("--greet", "greet NAME at start-up (repeatable)", lambda name: {"name": name}, "NAME", repeat=True),
        reply="greeted",
    )
    def greet(self, name: str, punctuation: str = "!") -> int:
        """Greet ``name``; returns how many greetings there were so far."""
        self.greetings.append(f"hello {name}{punctuation}")
        return len(self.greetings)


GreetingControl = type("GreetingControl", (EmulatorControl,), remote_methods(GreetingEmulator))


def test_a_control_added_to_the_table_is_on_the_python_api_the_control_api_and_the_command_line():
    assert controls_of(GreetingEmulator)[-1].name == "greet"
    with GreetingEmulator(clock=ManualClock()) as emulator:
        assert emulator.greet("python") == 1
        remote = GreetingControl(emulator.endpoint_url)
        assert remote.greet("http", punctuation="?") == 2
        assert remote.greet(name="again") == 3
        assert emulator.greetings == ["hello python!", "hello http?", "hello again!"]
        assert remote.images() == {}  # the table's other controls are still there
    assert inspect.signature(GreetingControl.greet) == inspect.signature(GreetingEmulator.greet)
    assert (
        "Greet ``name``" in GreetingControl.greet.__doc__
        and "POST /_emulator/greetings" in GreetingControl.greet.__doc__
    )

    assert "--greet NAME" in command_line(GreetingEmulator).format_help()
    emulator, _ = configured_emulator(["--port", "0", "--greet", "cli", "--greet", "twice"], GreetingEmulator)
    assert emulator.greetings == ["hello cli!", "hello twice!"]

    assert not hasattr(EmulatorControl, "greet") and "--greet" not in command_line().format_help()


def test_every_control_of_the_emulator_is_on_every_face():
    entries = controls_of(ImageBuilderEmulator)
    help_text = command_line().format_help()
    routes = http_actions(ImageBuilderEmulator())
    assert len(entries) >= 20
    for entry in entries:
        assert getattr(ImageBuilderEmulator, entry.name).__doc__, entry.name
        assert getattr(EmulatorControl, entry.name).__doc__.startswith(inspect.getdoc(entry.function)), entry.name
        assert (entry.http_method, entry.path) in routes, entry.name
        assert all(option.flag in help_text for option in entry.options), entry.name


def test_the_emulator_takes_the_providers_constants():
    assert set(PHASES) == states.IN_PROGRESS_STATES
    assert set(emulator_events.END_STATUSES) == states.SUCCESS_STATES | states.FAILURE_STATES
    assert set(SEVERITIES) == set(diagnostics.SEVERITY_RANK)
    assert emulator_events.EVENT_SOURCE is states.EVENT_SOURCE
    assert emulator_events.STATE_CHANGE_DETAIL_TYPE is states.DETAIL_TYPE


def _imports(path: Path) -> list[str]:
    """Modules ``path`` imports, relative ones made absolute."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            names += [module] + [f"{module}.{alias.name}" for alias in node.names]
    return names


def test_the_provider_never_imports_the_emulator_and_the_emulator_only_its_constants():
    testing = PACKAGE / "testing"
    for path in PACKAGE.rglob("*.py"):
        imported = [name for name in _imports(path) if name.startswith("airflow_imagebuilder.")]
        if testing in path.parents:
            provider = {
                ".".join(name.split(".")[:3])
                for name in imported
                if not name.startswith("airflow_imagebuilder.testing")
            } - {"airflow_imagebuilder._decisions"}
            constants = {f"airflow_imagebuilder._decisions.{name}" for name in ("states", "diagnostics", "fields")}
            assert provider <= constants, path
        else:
            assert not [name for name in imported if name.startswith("airflow_imagebuilder.testing")], path
