"""Opt-in pytest fixtures: add ``pytest_plugins = ["airflow_imagebuilder.testing.pytest_plugin"]`` to a conftest.

``imagebuilder_dags`` runs your own DAG files with ``dag.test()`` against an emulator whose builds move one phase
each time they are polled, with the waits' sleeps cut short: a DAG reaches AVAILABLE in seconds with its own
``waiter_delay`` and ``poke_interval``.  Loading the plugin gives the test session a temporary ``AIRFLOW_HOME``
(with its SQLite database), set before anything imports Airflow; ``imagebuilder_airflow_db`` migrates it once.

``imagebuilder_emulator`` runs an :class:`ImageBuilderEmulator` per test on a manual clock with response validation
on; advance it with ``imagebuilder_emulator.advance(seconds)``.  ``imagebuilder_strict_emulator`` is the same in
strict mode (seed recipes and configurations with the service's Create calls first).  ``imagebuilder_client`` is a
boto3 client wired to ``imagebuilder_emulator``, ``imagebuilder_strict_client`` to the strict one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_imagebuilder.testing.clock import ManualClock
from airflow_imagebuilder.testing.emulator import ImageBuilderEmulator
from airflow_imagebuilder.testing.processes import local_client

#: The session's Airflow home, set by :func:`pytest_configure` (None when Airflow was imported before it).
AIRFLOW_HOME: Path | None = None
#: The longest a sleep lasts during :meth:`ImageBuilderDagRunner.run`: builds move when polled, not with time.
SHORT_SLEEP = 0.01
#: AWS settings of a test that must never reach a real account: test keys in us-east-1, no profile, no config or
#: credentials file, no instance metadata.
TEST_AWS_ENVIRONMENT = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


def pytest_configure(config: pytest.Config) -> None:
    """Point Airflow at a temporary home and SQLite database before anything imports Airflow (it reads them once)."""
    global AIRFLOW_HOME
    if "airflow" in sys.modules:
        return
    AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="airflow-home-"))
    os.environ.update(
        AIRFLOW_HOME=str(AIRFLOW_HOME),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        # without a key Airflow warns in every task that connections are stored unencrypted
        AIRFLOW__CORE__FERNET_KEY=base64.urlsafe_b64encode(os.urandom(32)).decode(),
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    if AIRFLOW_HOME is not None:
        shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def imagebuilder_airflow_db() -> Path:
    """The session's temporary Airflow home, its database migrated (once per session)."""
    if AIRFLOW_HOME is None:
        raise RuntimeError(
            "Airflow was imported before airflow_imagebuilder.testing.pytest_plugin was loaded, so the test session "
            "cannot have an Airflow home of its own: name the plugin in your top conftest.py's pytest_plugins "
            "before that conftest imports Airflow"
        )
    from airflow.utils.db import initdb

    initdb()
    return AIRFLOW_HOME


class DagTestResult:
    """A finished ``dag.test()`` run: its state, the state of each task and their XComs."""

    def __init__(self, dag_run: Any) -> None:
        self.dag_run = dag_run
        #: ``success`` or ``failed``.
        self.state = getattr(dag_run.state, "value", dag_run.state)
        #: ``{task_id: state}`` (a mapped task's last instance).
        self.task_states = {ti.task_id: getattr(ti.state, "value", ti.state) for ti in dag_run.get_task_instances()}

    def xcom(self, task_id: str, key: str = "return_value") -> Any:
        """The value task ``task_id`` pushed under ``key`` (None when it pushed none)."""
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            row = (
                session.query(XComModel)
                .filter_by(dag_id=self.dag_run.dag_id, run_id=self.dag_run.run_id, task_id=task_id, key=key)
                .one_or_none()
            )
            return None if row is None else XComModel.deserialize_value(row)


class ImageBuilderDagRunner:
    """Runs DAG files with ``dag.test()`` against :attr:`emulator`; see :meth:`run`."""

    def __init__(self, emulator: ImageBuilderEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
        self.emulator = emulator
        self._monkeypatch = monkeypatch

    def run(self, dag_file: str | Path, dag_id: str | None = None, **test_kwargs: Any) -> DagTestResult:
        """Run DAG ``dag_id`` (the file's only DAG when None) of ``dag_file`` once, as ``airflow dags test`` does.

        The file's folder is the DAGs folder for the run (Airflow 3 runs only DAGs it finds there).  Sleeps last
        at most :data:`SHORT_SLEEP` during the run.  ``test_kwargs`` go to ``dag.test()`` (``run_conf``, ...).
        """
        path = Path(dag_file).resolve()
        bundle = {"name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle"}
        with self._monkeypatch.context() as patch:
            patch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(path.parent))
            patch.setenv(
                "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
                json.dumps([{**bundle, "kwargs": {"path": str(path.parent)}}]),
            )
            patch.syspath_prepend(str(path.parent))
            dag = _load_dag(path, dag_id)
            sleep, async_sleep = time.sleep, asyncio.sleep
            patch.setattr(time, "sleep", lambda seconds: sleep(min(seconds, SHORT_SLEEP)))
            patch.setattr(asyncio, "sleep", lambda seconds, *args: async_sleep(min(seconds, SHORT_SLEEP), *args))
            return DagTestResult(dag.test(**test_kwargs))


def _load_dag(path: Path, dag_id: str | None) -> Any:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow < 3.2
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef,attr-defined]

    bag = DagBag(dag_folder=str(path))
    if bag.import_errors:
        raise RuntimeError(f"{path} does not import: {bag.import_errors}")
    if dag_id is None and len(bag.dags) == 1:
        return next(iter(bag.dags.values()))
    if dag_id not in bag.dags:
        raise LookupError(f"{path} defines the DAGs {sorted(bag.dags)}: name one with dag_id= (got {dag_id!r})")
    return bag.dags[dag_id]


@pytest.fixture
def imagebuilder_dags(
    imagebuilder_airflow_db: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ImageBuilderDagRunner]:
    """Run your DAG files against an emulator whose builds move one phase per GetImage (lenient, 60 s phases).

    ``aws_default`` and botocore's ``AWS_ENDPOINT_URL_IMAGEBUILDER`` point at the emulator (so tasks naming another
    ``aws_conn_id``, without an ``endpoint_url``, reach it too), with test credentials in ``us-east-1``.
    """
    with ImageBuilderEmulator(phase_seconds=60.0, advance_on_poll=True, validate_responses=True) as emulator:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        connection = {"conn_type": "aws", "login": "testing", "password": "testing"}
        connection["extra"] = {"region_name": "us-east-1", "endpoint_url": emulator.endpoint_url}  # type: ignore[assignment]
        for name, value in {
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(connection),
            "AWS_ENDPOINT_URL_IMAGEBUILDER": emulator.endpoint_url,
            **TEST_AWS_ENVIRONMENT,
        }.items():
            monkeypatch.setenv(name, value)
        yield ImageBuilderDagRunner(emulator, monkeypatch)


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
