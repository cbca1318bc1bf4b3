"""pytest plugin (registered through the ``pytest11`` entry point): an emulator per test.

``imagebuilder_emulator`` runs an :class:`ImageBuilderEmulator` on a manual clock with response validation on;
advance it with ``imagebuilder_emulator.advance(seconds)``.  ``imagebuilder_client`` is a boto3 client wired to
it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from airflow_imagebuilder.testing import ImageBuilderEmulator, ManualClock


@pytest.fixture
def imagebuilder_emulator() -> Iterator[ImageBuilderEmulator]:
    with ImageBuilderEmulator(phase_seconds=60.0, clock=ManualClock(), validate_responses=True) as emulator:
        yield emulator


@pytest.fixture
def imagebuilder_client(imagebuilder_emulator: ImageBuilderEmulator) -> Any:
    import boto3

    return boto3.client(
        "imagebuilder",
        endpoint_url=imagebuilder_emulator.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
