"""A real Airflow deployment as local processes: api-server, scheduler, dag-processor, triggerer (+ celery worker).

SQLite + LocalExecutor by default; PostgreSQL + CeleryExecutor + Redis when ``IB_ENGINE_SQL_ALCHEMY_CONN`` and
``IB_ENGINE_BROKER_URL`` are set (CI), mirroring docker-compose.yaml's stack.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy

from airflow_imagebuilder.testing.processes import free_port

ROOT = Path(__file__).resolve().parent.parent


#: The example DAGs in dags/ (one per file).
EXAMPLE_DAGS = len(list((ROOT / "dags").glob("imagebuilder_*.py")))


def engines() -> list[str]:
    """SQLite + LocalExecutor always; PostgreSQL + CeleryExecutor when CI provides the services."""
    distributed = os.environ.get("IB_ENGINE_SQL_ALCHEMY_CONN") and os.environ.get("IB_ENGINE_BROKER_URL")
    return ["sqlite-local", "postgres-celery"] if distributed else ["sqlite-local"]


class AirflowEngine:
    def __init__(self, home: Path, aws_connection: str, kind: str = "sqlite-local") -> None:
        self.home = home
        self.api_port = free_port()
        broker = os.environ["IB_ENGINE_BROKER_URL"] if kind == "postgres-celery" else None
        self.sql_alchemy_conn = os.environ["IB_ENGINE_SQL_ALCHEMY_CONN"] if broker else f"sqlite:///{home}/airflow.db"
        self.executor = "CeleryExecutor" if broker else "LocalExecutor"
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
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
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
            "AIRFLOW_CONN_AWS_DEFAULT": aws_connection,
        }
        if broker:
            self.env["AIRFLOW__CELERY__BROKER_URL"] = broker
            self.env["AIRFLOW__CELERY__RESULT_BACKEND"] = "db+" + self.sql_alchemy_conn.replace("+psycopg2", "")
        self.env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.db = sqlalchemy.create_engine(self.sql_alchemy_conn)

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
        commands = {
            "api-server": ["api-server", "--port", str(self.api_port)],
            "scheduler": ["scheduler"],
            "dag-processor": ["dag-processor"],
            "triggerer": ["triggerer"],
        }
        if self.executor == "CeleryExecutor":
            commands["celery-worker"] = ["celery", "worker", "--concurrency", "4"]
        for name, args in commands.items():
            log = (self.home / f"{name}.log").open("wb")
            self.processes[name] = subprocess.Popen(
                [str(Path(sys.executable).with_name("airflow")), *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_until(
            lambda: self.query("select count(*) from dag where dag_id like 'imagebuilder_%'")[0][0] == EXAMPLE_DAGS,
            f"the dag-processor to register the {EXAMPLE_DAGS} example DAGs",
            timeout=180,
        )
        return self

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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise AssertionError(f"{name} exited with {process.returncode}:\n{self.log_tail(name)}")
            if condition():
                return
            time.sleep(1)
        raise AssertionError(f"Timed out after {timeout}s waiting for {what}\n{self.log_tail('scheduler')}")

    def log_tail(self, name: str, size: int = 4000) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace")[-size:] if path.exists() else ""
