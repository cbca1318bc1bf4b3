"""Opt-in pytest fixtures: add ``pytest_plugins = ["airflow_imagebuilder.testing.pytest_plugin"]`` to a conftest.

``imagebuilder_emulator`` runs an :class:`ImageBuilderEmulator` per test on a manual clock with response validation
on; advance it with ``imagebuilder_emulator.advance(seconds)``.  ``imagebuilder_strict_emulator`` is the same in
strict mode (seed recipes and configurations with the service's Create calls first).  ``imagebuilder_client`` is a
boto3 client wired to ``imagebuilder_emulator``, ``imagebuilder_strict_client`` to the strict one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from airflow_imagebuilder.testing.clock import ManualClock
from airflow_imagebuilder.testing.emulator import ImageBuilderEmulator
from airflow_imagebuilder.testing.processes import local_client


@pytest.fixture
def imagebuilder_emulator() -> Iterator[ImageBuilderEmulator]:
    """A lenient emulator (resources registered on first use) on a manual clock, 60 s per phase."""
    with ImageBuilderEmulator(phase_seconds=60.0, clock=ManualClock(), validate_responses=True) as emulator:
        yield emulator


@pytest.fixture
def imagebuilder_strict_emulator() -> Iterator[ImageBuilderEmulator]:
    """A strict emulator (resources must be created first) on a manual clock, 60 s per phase."""
    with ImageBuilderEmulator(
        phase_seconds=60.0, clock=ManualClock(), validate_responses=True, strict=True
    ) as emulator:
        yield emulator


@pytest.fixture
def imagebuilder_client(imagebuilder_emulator: ImageBuilderEmulator) -> Any:
    """A boto3 ``imagebuilder`` client for ``imagebuilder_emulator``."""
    return local_client("imagebuilder", imagebuilder_emulator.endpoint_url)


@pytest.fixture
def imagebuilder_strict_client(imagebuilder_strict_emulator: ImageBuilderEmulator) -> Any:
    """A boto3 ``imagebuilder`` client for ``imagebuilder_strict_emulator``."""
    return local_client("imagebuilder", imagebuilder_strict_emulator.endpoint_url)
