"""A real Airflow deployment as local processes: api-server, scheduler, dag-processor, triggerer (+ celery worker).

SQLite + LocalExecutor by default; PostgreSQL + CeleryExecutor + Redis when ``IB_ENGINE_SQL_ALCHEMY_CONN`` and
``IB_ENGINE_BROKER_URL`` are set (CI), mirroring docker-compose.yaml's stack.

Chaos tests kill and restart single processes (:meth:`AirflowEngine.kill`, :meth:`AirflowEngine.restart`) and
restart the PostgreSQL server under them (:meth:`AirflowEngine.restart_database`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy

from airflow_imagebuilder.testing.examples import seed_example_resources
from airflow_imagebuilder.testing.processes import (
    ServiceProcess,
    aws_connection_uri,
    emulator_process,
    free_port,
    local_client,
    moto_process,
)

ROOT = Path(__file__).resolve().parent.parent


#: The example DAGs in dags/ (one per file).
EXAMPLE_DAGS = len(list((ROOT / "dags").glob("imagebuilder_*.py")))


def engines() -> list[str]:
    """SQLite + LocalExecutor always; PostgreSQL + CeleryExecutor when CI provides the services."""
    distributed = os.environ.get("IB_ENGINE_SQL_ALCHEMY_CONN") and os.environ.get("IB_ENGINE_BROKER_URL")
    return ["sqlite-local", "postgres-celery"] if distributed else ["sqlite-local"]


class AirflowEngine:
    """The deployment, started and stopped as a context manager.

    :param home: ``AIRFLOW_HOME`` (logs, SQLite database, process logs).
    :param aws_connection: ``AIRFLOW_CONN_AWS_DEFAULT``.
    :param kind: ``sqlite-local`` or ``postgres-celery`` (see :func:`engines`).
    :param dags_folder: the DAGs folder (default: the example DAGs in dags/).
    :param dag_ids: the DAGs to wait for at start-up (default: every example DAG).
    :param config: more environment, e.g. ``AIRFLOW__SECTION__KEY`` settings.
    :param celery_concurrency: task processes of the Celery worker (CeleryExecutor only).
    """

    def __init__(
        self,
        home: Path,
        aws_connection: str,
        kind: str = "sqlite-local",
        *,
        dags_folder: Path | None = None,
        dag_ids: Collection[str] | None = None,
        config: Mapping[str, str] | None = None,
        celery_concurrency: int = 4,
    ) -> None:
        self.home = home
        self.celery_concurrency = celery_concurrency
        self.dag_ids = dag_ids
        self.api_port = free_port()
        broker = os.environ["IB_ENGINE_BROKER_URL"] if kind == "postgres-celery" else None
        self.sql_alchemy_conn = os.environ["IB_ENGINE_SQL_ALCHEMY_CONN"] if broker else f"sqlite:///{home}/airflow.db"
        self.executor = "CeleryExecutor" if broker else "LocalExecutor"
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder or ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": self.executor,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sql_alchemy_conn,
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "3",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
            "AIRFLOW_CONN_AWS_DEFAULT": aws_connection,
        }
        if broker:
            self.env["AIRFLOW__CELERY__BROKER_URL"] = broker
            # Results in Redis, not in the metadata database: a worker that needs PostgreSQL to record that a task
            # started fails every message it takes while the database is away (and fails silently: the failure is
            # not recorded either), leaving those tasks queued until [scheduler] task_queued_timeout.  Task
            # processes reach the database only through the api-server, so with this the worker needs none.
            self.env["AIRFLOW__CELERY__RESULT_BACKEND"] = broker
        self.env.update(config or {})
        self.env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        #: Restart a process that exits, as docker-compose.yaml's ``restart: always`` does (see :meth:`wait_until`).
        self.restart_always = False
        #: The processes restarted because they exited, in order.
        self.restarted: list[str] = []
        self.commands: dict[str, list[str]] = {}
        self.db = sqlalchemy.create_engine(self.sql_alchemy_conn, pool_pre_ping=True)  # survives a database restart

    @property
    def url(self) -> str:
        """The api-server's base URL (the UI is at its root)."""
        return f"http://127.0.0.1:{self.api_port}"

    def cli(self, *args: str, check: bool = True) -> str:
        for _ in range(5):  # SQLite allows one writer: a CLI write can lose the race against the scheduler
            result = subprocess.run(
                [str(Path(sys.executable).with_name("airflow")), *args], env=self.env, capture_output=True, text=True
            )
            if result.returncode == 0 or "database is locked" not in result.stdout + result.stderr:
                break
            time.sleep(2)
        if check and result.returncode != 0:
            raise AssertionError(f"airflow {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result.stdout

    def api(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """Call the api-server's REST API (``path`` from ``/api/v2``), as the UI does; the parsed JSON answer.

        Retried for a while on a 5xx answer or a refused connection (SQLite's single writer, an api-server
        restarting); a 4xx fails at once.
        """
        request = urllib.request.Request(
            f"{self.url}/api/v2{path}",
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method=method,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    return json.loads(response.read() or b"null")
            except urllib.error.HTTPError as error:
                if error.code < 500 or time.monotonic() > deadline:
                    detail = error.read().decode(errors="replace")[-3000:]
                    raise AssertionError(f"{method} {path} answered {error.code}: {detail}") from error
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
            time.sleep(2)

    def __enter__(self) -> AirflowEngine:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> AirflowEngine:
        if self.db.dialect.name == "postgresql":  # a shared CI database: start from an empty schema
            with self.db.begin() as connection:
                connection.execute(sqlalchemy.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        self.cli("db", "migrate")
        self.commands = {
            "api-server": ["api-server", "--port", str(self.api_port)],
            "scheduler": ["scheduler"],
            "dag-processor": ["dag-processor"],
            "triggerer": ["triggerer"],
        }
        if self.executor == "CeleryExecutor":
            self.commands["celery-worker"] = ["celery", "worker", "--concurrency", str(self.celery_concurrency)]
        for name in self.commands:
            self.restart(name)
        if self.dag_ids is None:
            self.wait_until(
                lambda: self.query("select count(*) from dag where dag_id like 'imagebuilder_%'")[0][0] == EXAMPLE_DAGS,
                f"the dag-processor to register the {EXAMPLE_DAGS} example DAGs",
                timeout=180,
            )
        else:
            wanted = set(self.dag_ids)
            self.wait_until(
                lambda: wanted <= {row[0] for row in self.query("select dag_id from dag")},
                f"the dag-processor to register {sorted(wanted)}",
                timeout=180,
            )
        return self

    def restart(self, name: str) -> None:
        """Start process ``name`` (again, after :meth:`kill`); its log goes on in ``<home>/<name>.log``."""
        log = (self.home / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [str(Path(sys.executable).with_name("airflow")), *self.commands[name]],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to process ``name`` and everything it started (its process group), and reap it.

        The process is no longer watched (see :meth:`wait_until`) until :meth:`restart`.
        """
        process = self.processes.pop(name)
        try:
            descendants = psutil.Process(process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            descendants = []
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        for child in descendants:  # task processes may have left the process group
            with contextlib.suppress(psutil.NoSuchProcess):
                child.send_signal(sig)
        process.wait(timeout=60)

    def restart_database(self, down_seconds: float) -> None:
        """Stop the PostgreSQL server for ``down_seconds``, then start it (a failover, as Airflow meets it).

        Uses the Debian cluster tools, as ``.ci/run`` sets the server up: ``pg_ctlcluster`` of the cluster that
        listens on the connection's port.
        """
        if self.db.dialect.name != "postgresql":
            raise RuntimeError("restart_database needs the PostgreSQL engine")
        if shutil.which("pg_lsclusters") is None:
            raise RuntimeError("restart_database needs the Debian PostgreSQL cluster tools (pg_lsclusters)")
        port = str(self.db.url.port or 5432)
        clusters = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True).stdout
        version, cluster = next(
            (fields[0], fields[1])
            for fields in (re.split(r"\s+", line.strip()) for line in clusters.splitlines())
            if len(fields) > 2 and fields[2] == port
        )
        subprocess.run(["pg_ctlcluster", version, cluster, "stop", "-m", "fast"], check=True)
        time.sleep(down_seconds)
        subprocess.run(["pg_ctlcluster", version, cluster, "start"], check=True)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, 15)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
        self.db.dispose()

    def query(self, sql: str, **params: Any) -> list[Any]:
        with self.db.connect() as connection:
            return list(connection.execute(sqlalchemy.text(sql), params))

    def runs(self, dag_id: str) -> dict[str, str]:
        return dict(self.query("select run_id, state from dag_run where dag_id = :dag_id", dag_id=dag_id))

    def wait_for_runs(self, dag_id: str, count: int, prefix: str = "", timeout: float = 300) -> None:
        """Wait until ``count`` runs (ids starting with ``prefix``) succeeded; fail fast when one fails."""

        def done() -> bool:
            states = [state for run_id, state in self.runs(dag_id).items() if run_id.startswith(prefix)]
            if "failed" in states:
                raise AssertionError(f"A run of {dag_id} failed: {self.runs(dag_id)}\n{self.task_failures(dag_id)}")
            return states.count("success") >= count

        self.wait_until(done, f"{count} successful runs of {dag_id}", timeout)

    def task_failures(self, dag_id: str) -> str:
        rows = self.query(
            "select run_id, task_id, state from task_instance where dag_id = :dag_id and state != 'success'",
            dag_id=dag_id,
        )
        logs = [
            path.read_text(errors="replace")[-3000:] for path in (self.home / "logs").rglob(f"dag_id={dag_id}/**/*.log")
        ]
        return f"{rows}\n" + "\n".join(logs[-3:])

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 300) -> None:
        """Poll ``condition`` every second; fail when a process exits (unless :attr:`restart_always`) or on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in list(self.processes.items()):
                if process.poll() is None:
                    continue
                if not self.restart_always:
                    raise AssertionError(f"{name} exited with {process.returncode}:\n{self.log_tail(name)}")
                self.restarted.append(name)
                self.restart(name)
            if condition():
                return
            time.sleep(1)
        raise AssertionError(f"Timed out after {timeout}s waiting for {what}\n{self.log_tail('scheduler')}")

    def log_tail(self, name: str, size: int = 4000) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace")[-size:] if path.exists() else ""


@dataclass
class ExampleDeployment:
    """The example DAGs' world: the emulator (resources seeded), moto (SSM, ...) and the engine using both."""

    emulator: ServiceProcess
    moto: ServiceProcess
    engine: AirflowEngine


#: Build phases long enough that a deferred sensor's trigger still finds the build running at its first poll, so it
#: fires a poke interval later rather than at once.  A trigger that fires at once can resume the task before a busy
#: scheduler has read the executor's report of the deferring process's exit; Airflow (3.3.2) then takes that stale
#: report for the resumed attempt's and fails the task ("finished with state success, but the task instance's
#: state attribute is running").  For runs that must not fail that way; each build takes about 20 s.
UNHURRIED_PHASE_SECONDS = 3.0


@contextlib.contextmanager
def example_deployment(
    home: Path, kind: str = "sqlite-local", *, phase_seconds: float = 1.0
) -> Iterator[ExampleDeployment]:
    """The emulator with the example DAGs' resources, moto, and an engine at both; all stopped after."""
    with emulator_process(phase_seconds=phase_seconds, log_dir=home) as emulator, moto_process(log_dir=home) as moto:
        seed_example_resources(local_client("imagebuilder", emulator.endpoint_url))
        with AirflowEngine(home, aws_connection_uri(emulator.endpoint_url, moto.endpoint_url), kind) as engine:
            yield ExampleDeployment(emulator, moto, engine)


def run_golden_ami_chain(engine: AirflowEngine) -> str:
    """Trigger the golden-AMI chain and wait for its success; the run id."""
    engine.cli("dags", "unpause", "imagebuilder_golden_ami")
    engine.cli("dags", "trigger", "imagebuilder_golden_ami")
    engine.wait_for_runs("imagebuilder_golden_ami", 1)
    [run_id] = engine.runs("imagebuilder_golden_ami")
    return run_id
