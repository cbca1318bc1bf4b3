"""Test configuration: the plugin's isolated Airflow home (an SQLite database), emulator-backed AWS connections.

Airflow reads its configuration when first imported, so the environment is set here, before any test module
imports Airflow.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["airflow_imagebuilder.testing.pytest_plugin"]

TESTS = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    from airflow_imagebuilder.testing.pytest_plugin import TEST_AWS_ENVIRONMENT  # once pytest has loaded the plugin

    os.environ.update(
        {
            "AIRFLOW__CORE__DAGS_FOLDER": str(TESTS / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            **TEST_AWS_ENVIRONMENT,
            # Airflow 3.0's dag.test() wraps error lines at the terminal width (80 without a terminal): the tests
            # read whole messages
            "COLUMNS": "500",
        }
    )
    for name in ("AIRFLOW_CONN_AWS_DEFAULT", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)


ACCOUNT = "123456789012"
REGION = "us-east-1"
IMAGE_RECIPE_ARN = f"arn:aws:imagebuilder:{REGION}:{ACCOUNT}:image-recipe/golden-base/1.0.0"
CONTAINER_RECIPE_ARN = f"arn:aws:imagebuilder:{REGION}:{ACCOUNT}:container-recipe/base-container/2.1.0"
INFRASTRUCTURE_ARN = f"arn:aws:imagebuilder:{REGION}:{ACCOUNT}:infrastructure-configuration/build-infra"
DISTRIBUTION_ARN = f"arn:aws:imagebuilder:{REGION}:{ACCOUNT}:distribution-configuration/golden-dist"


def aws_connection(endpoint_url: str, **extra: Any) -> str:
    """The JSON form of an ``aws`` connection pointed at ``endpoint_url``."""
    return json.dumps(
        {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"region_name": REGION, "endpoint_url": endpoint_url, **extra},
        }
    )


@pytest.fixture(scope="session")
def airflow_db(imagebuilder_airflow_db: Path) -> None:
    """The plugin's Airflow home (a temporary directory), its database created once per session."""


@pytest.fixture
def aws_conn(imagebuilder_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``aws_default`` points at the test's emulator."""
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection(imagebuilder_emulator.endpoint_url))
    return imagebuilder_emulator


@pytest.fixture
def fast_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An emulator on the real clock with short phases, wired to ``aws_default``, for DAG runs."""
    from airflow_imagebuilder.testing import ImageBuilderEmulator

    with ImageBuilderEmulator(phase_seconds=0.05, validate_responses=True) as emulator:
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection(emulator.endpoint_url))
        yield emulator


def load_dag(file_name: str, dag_id: str) -> Any:
    """Import a DAG file of tests/dags afresh (it reads its settings from the environment)."""
    path = TESTS / "dags" / file_name
    spec = importlib.util.spec_from_file_location(f"test_dag_{uuid.uuid4().hex}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return next(value for value in vars(module).values() if getattr(value, "dag_id", None) == dag_id)


def xcom(dag_run: Any, task_id: str, key: str = "return_value") -> Any:
    """Read an XCom value of a finished test run."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, key=key)
            .one_or_none()
        )
        if row is None:
            return None
        return XComModel.deserialize_value(row)


def task_states(dag_run: Any) -> dict[str, str]:
    return {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()}
