"""A local EC2 Image Builder service for tests and demos (moto and LocalStack have no Image Builder).

Usage::

    from airflow_imagebuilder.testing import ImageBuilderEmulator

    with ImageBuilderEmulator(phase_seconds=0.5, strict=True) as emulator:
        client = boto3.client("imagebuilder", endpoint_url=emulator.endpoint_url, region_name="us-east-1")

Layout, as moto splits a service: ``resources`` (recipes, configurations, pipelines and builds, each owning its
state and description), ``workflows`` (the managed workflows a build runs, step by step, and how a planned failure
ends them), ``findings`` (planned image scan findings and the ``ImageScanFinding`` they become), ``backend`` (the
operations: validation, client tokens, lifecycle), ``service`` (faults and the journal in front of the backend),
``server`` (the rest-json protocol over HTTP and the control API), ``emulator`` (the in-process and remote
handles) and ``controls`` (how each control, a marked method of the emulator, becomes a method of the remote
handle, a route of the control API and a command-line option).
"""

from __future__ import annotations

from airflow_imagebuilder.testing.backend import ImageBuilderBackend
from airflow_imagebuilder.testing.clock import ManualClock, RealClock
from airflow_imagebuilder.testing.emulator import EmulatorControl, ImageBuilderEmulator
from airflow_imagebuilder.testing.resources import PHASES
from airflow_imagebuilder.testing.service import EmulatedService, Fault, JournalEntry

__all__ = [
    "PHASES",
    "EmulatedService",
    "EmulatorControl",
    "Fault",
    "ImageBuilderBackend",
    "ImageBuilderEmulator",
    "JournalEntry",
    "ManualClock",
    "RealClock",
]
