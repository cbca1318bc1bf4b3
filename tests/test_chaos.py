"""Chaos under the real engine: 50 deferrable builds while the triggerer, workers, service and database fail.

Each step runs the chaos DAG (``tests/dags/chaos_builds.py``: 50 mapped deferrable CreateImage tasks, builds of
20-60 s in the emulator) once and injects one failure while it runs; then it checks, from the emulator's journal
and Airflow's database, that every task instance ended as the step requires, that each has exactly one image,
that no build was cancelled (no user cancelled any) and that nothing is left deferred or running.  It prints one
``CHAOS {...}`` line per step; docs/reliability.md quotes them.

Durations are scaled down by :data:`TIME_SCALE` where the provider's own bounds are what a step exercises: the
outage lasts 180 s / TIME_SCALE and the DAG's API retry policy is the provider's default with every duration
divided by the same factor, so creates and waits meet the outage in the same proportion as at full scale.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from airflow_imagebuilder.testing import EmulatorControl
from airflow_imagebuilder.testing.processes import aws_connection_uri, emulator_process, local_client
from tests.engine import AirflowEngine, engines

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DAG_FILE = Path(__file__).parent / "dags" / "chaos_builds.py"
DAG_ID = "ib_chaos"
TASKS = 50
#: The connection's access key: step 5 denies it alone, the test's own client keeps working.
ACCESS_KEY = "AKIACHAOSAIRFLOW"
#: 20-60 s per build: 2 s PENDING + CREATING, 10-50 s BUILDING, 8 s TESTING, DISTRIBUTING, INTEGRATING.
PHASE_SECONDS: dict[str, Any] = {
    "PENDING": 2,
    "BUILDING": [10, 50],
    "TESTING": 3,
    "DISTRIBUTING": 3,
    "INTEGRATING": 2,
}
TIME_SCALE = 3
OUTAGE_SECONDS = 180 / TIME_SCALE  # first half 503 for every call, second half dropped connections
TRIGGERER_DOWN_SECONDS = 10
DATABASE_DOWN_SECONDS = 15
CREATE_LATENCY_SECONDS = 8
#: Task processes at a time: the LocalExecutor's parallelism, the Celery worker's processes.
TASK_PROCESSES = 8
#: A killed worker's tasks are noticed by the scheduler once their heartbeat is this old.
HEARTBEAT_TIMEOUT_SECONDS = 20
UNFINISHED = ("deferred", "running", "queued", "scheduled", "up_for_retry", "up_for_reschedule", "restarting")
#: The steps to run, in this order (all by default); e.g. IB_CHAOS_STEPS=5 to run one while working on it.  Steps 1
#: and 5 inject nothing until all their tasks have deferred, so each starts its run while the step before it waits
#: for its last builds (see :func:`run_steps`): step 1 runs after step 2 for that.
STEPS = os.environ.get("IB_CHAOS_STEPS", "21345")
PERMISSION_HINT = "Check the credentials of connection 'aws_default'"


class ChaosRun:
    """The chaos DAG under a real engine, with what each step needs to drive and to check it."""

    def __init__(self, engine: AirflowEngine, endpoint_url: str) -> None:
        self.engine = engine
        self.control = EmulatorControl(endpoint_url)
        self.client = local_client("imagebuilder", endpoint_url)  # signed with another key than the connection's
        self.port = int(endpoint_url.rsplit(":", 1)[1])
        self._tags: dict[str, tuple[str, int]] = {}

    # ------------------------------------------------------------------ Airflow side
    def trigger(self, run_id: str, day: int) -> None:
        logical_date = dt.datetime(2026, 3, day, tzinfo=dt.timezone.utc).isoformat()
        # The REST API, as the UI triggers: the CLI costs seconds of a busy machine's CPU for each run.
        self.engine.api("POST", f"/dags/{DAG_ID}/dagRuns", {"dag_run_id": run_id, "logical_date": logical_date})

    def task_instances(self, run_id: str) -> dict[int, tuple[str | None, int]]:
        """State and try number of each map index of the run."""
        rows = self.engine.query(
            "select map_index, state, try_number from task_instance where dag_id = :dag_id and run_id = :run_id",
            dag_id=DAG_ID,
            run_id=run_id,
        )
        return {int(index): (state, int(tries)) for index, state, tries in rows}

    def states(self, run_id: str) -> list[str | None]:
        return [state for state, _ in self.task_instances(run_id).values()]

    def wait_for_states(self, run_id: str, wanted: set[str], what: str, timeout: float = 300) -> None:
        def reached() -> bool:
            states = self.states(run_id)
            return len(states) == TASKS and set(states) <= wanted

        self.engine.wait_until(reached, f"{what} ({run_id})", timeout)

    def wait_until_finished(self, run_id: str, timeout: float = 300) -> None:
        self.wait_for_states(run_id, {"success", "failed"}, "every task instance to finish", timeout)

    # ------------------------------------------------------------------ emulator side
    def images(self, run_id: str) -> dict[int, list[str]]:
        """Image build version ARNs of the run, by map index (from the builds' tags)."""
        for arn in self.control.images():
            if arn not in self._tags:
                tags = self.client.get_image(imageBuildVersionArn=arn)["image"].get("tags", {})
                self._tags[arn] = (tags.get("chaos-run", ""), int(tags.get("shard", -1)))
        by_index: dict[int, list[str]] = {}
        for arn, (run, index) in self._tags.items():
            if run == run_id:
                by_index.setdefault(index, []).append(arn)
        return by_index

    def polled(self, since: int) -> set[str]:
        """Images of which a GetImage succeeded since journal entry ``since``."""
        return {
            entry["image_arn"]
            for entry in self.control.journal()[since:]
            if entry["operation"] == "GetImage" and entry["status"] == 200 and entry["image_arn"]
        }

    def task_processes(self) -> int:
        """Task processes alive (titled ``airflow worker -- <task instance id>``; executor workers are not)."""
        count = 0
        for process in _worker_root(self.engine).children(recursive=True):
            try:
                title = " ".join(process.cmdline())
                count += title.startswith("airflow worker -- ") and "Executor" not in title
            except psutil.NoSuchProcess:
                continue
        return count

    def requeue_races(self, run_id: str) -> list[int]:
        """Map indexes the scheduler failed as "changed externally" while their resumed try was queued.

        Airflow 3.3's race: a trigger fires before the executor reports that the deferring process exited; the
        scheduler queues the resumed try, then takes the late exit report for a task killed externally.
        """
        pattern = re.compile(
            rf"reported that the task instance <TaskInstance: {DAG_ID}\.build {run_id} map_index=(\d+) \[queued\]"
        )
        return sorted({int(index) for index in pattern.findall(self.engine.log_tail("scheduler", 50_000_000))})

    def workers_calling(self) -> int:
        """Task processes in a call to the emulator (deferred waits call it from the triggerer, not counted)."""
        return len(_processes_calling(_worker_root(self.engine), self.port))

    # ------------------------------------------------------------------ the check after each step
    def check(self, step: str, run_id: str, started: float, *, failed: int = 0, **extra: Any) -> dict[str, Any]:
        """Assert the step's outcome from Airflow's database and the emulator; print and return its CHAOS line."""
        instances = self.task_instances(run_id)
        states = [state for state, _ in instances.values()]
        images = self.images(run_id)
        report = {
            "step": step,
            "tasks": len(instances),
            "succeeded": states.count("success"),
            "failed": states.count("failed"),
            "images": sum(len(arns) for arns in images.values()),
            "duplicates": sum(len(arns) - 1 for arns in images.values()),
            "stuck": sum(1 for state in states if state in UNFINISHED or state is None),
            "seconds": round(time.monotonic() - started),
            "retried": sum(1 for _, tries in instances.values() if tries > 1),
            **extra,
        }
        print("CHAOS " + json.dumps(report), flush=True)
        failures = self.engine.task_failures(DAG_ID) if report["failed"] != failed else ""
        assert report["tasks"] == TASKS, report
        assert (report["succeeded"], report["failed"], report["stuck"]) == (TASKS - failed, failed, 0), failures
        assert sorted(images) == list(range(TASKS)), f"task instances without an image: {report}"
        assert report["duplicates"] == 0, {index: arns for index, arns in images.items() if len(arns) > 1}
        assert self.control.journal("CancelImageCreation") == [], "a build was cancelled, and no user cancelled one"
        return report


def kill_workers_in_create_image(engine: AirflowEngine, port: int) -> int:
    """SIGKILL the task processes that are in a call to the emulator (a CreateImage being delayed); how many.

    CeleryExecutor: the whole Celery worker with its tasks, as an evicted pod (the caller restarts it).
    LocalExecutor: each such task process, as the OOM killer would; its executor worker survives and reports
    the try failed.  Killing every executor worker at once instead deadlocks the scheduler (see
    docs/reliability.md).
    """
    if "celery-worker" in engine.processes:
        busy = len(_processes_calling(_worker_root(engine), port))
        engine.kill("celery-worker")
        return busy
    killed = 0
    for worker in _worker_root(engine).children():
        try:
            title = " ".join(worker.cmdline())
            if "LocalExecutor:" not in title or "<idle>" in title:
                continue
            for task in _processes_calling(worker, port):
                if task.pid != worker.pid:
                    task.kill()
                    killed += 1
        except psutil.NoSuchProcess:
            continue
    return killed


def _worker_root(engine: AirflowEngine) -> psutil.Process:
    """The process whose descendants run tasks: the Celery worker, or the scheduler (LocalExecutor)."""
    name = "celery-worker" if "celery-worker" in engine.processes else "scheduler"
    return psutil.Process(engine.processes[name].pid)


def _processes_calling(root: psutil.Process, port: int) -> list[psutil.Process]:
    """``root`` and its descendants that hold a connection to ``port``."""
    calling = []
    for process in [root, *root.children(recursive=True)]:
        try:
            if any(c.raddr and c.raddr.port == port for c in process.net_connections(kind="tcp")):
                calling.append(process)
        except psutil.NoSuchProcess:
            continue
    return calling


#: The rest of a step whose run has a build for every task instance: wait for the run to end, then check it.
Finish = Callable[[], None]


def run_steps(chaos: ChaosRun, engine: AirflowEngine, kind: str, steps: str) -> list[dict[str, Any]]:
    """Run the steps in order, each checked on its own run.

    A step returns once every task instance of its run has its build, with what is left to do (:data:`Finish`).
    Steps 1 and 5 hold their builds and inject nothing until all their tasks have deferred, so they start their
    run first and then finish the previous step: the previous run has ended (and been checked) before they release
    their builds and inject their fault, and its builds all existed before they held new ones.  The other steps
    inject early in their run, so they finish the previous step before they start.
    """
    reports: list[dict[str, Any]] = []
    finish: Finish | None = None
    for step in steps:
        if step == "4" and engine.db.dialect.name != "postgresql":
            print("CHAOS " + json.dumps({"step": "database-restart", "skipped": "SQLite has no server to restart"}))
            continue
        finish = STEPS_BY_NUMBER[step](chaos, engine, kind, reports, finish)
    if finish:
        finish()
    return reports


def finish_meanwhile(finish_previous: Finish | None, started: float) -> int:
    """Finish the previous step while this step's tasks start and defer; the seconds the two runs overlapped."""
    if finish_previous is None:
        return 0
    finish_previous()
    return round(time.monotonic() - started)


def wait_for_every_build(chaos: ChaosRun, run_id: str) -> None:
    """Wait until every task instance of the run has its build (so a later hold cannot catch one of them)."""
    chaos.engine.wait_until(lambda: len(chaos.images(run_id)) == TASKS, f"a build for every task of {run_id}", 300)


def step_triggerer(
    chaos: ChaosRun, engine: AirflowEngine, kind: str, reports: list[dict[str, Any]], finish_previous: Finish | None
) -> Finish:
    control, run_id = chaos.control, "chaos-1-triggerer"
    # 1. Triggerer SIGKILL while all 50 waits are deferred, restarted 10 s later.  Builds are held PENDING until
    #    the last task defers (however slowly the machine starts them), then run 20-60 s each.
    started = time.monotonic()
    control.hold_builds()
    chaos.trigger(run_id, 1)
    overlapped = finish_meanwhile(finish_previous, started)
    chaos.wait_for_states(run_id, {"deferred"}, "all tasks to defer")
    assert control.release_builds() == TASKS
    engine.kill("triggerer")
    time.sleep(TRIGGERER_DOWN_SECONDS)
    engine.restart("triggerer")

    def finish() -> None:
        chaos.wait_until_finished(run_id)
        reports.append(chaos.check("triggerer-sigkill", run_id, started, overlapped=overlapped))
        assert reports[-1]["retried"] == 0  # every wait resumed in the new triggerer, no try failed

    return finish


def step_worker(
    chaos: ChaosRun, engine: AirflowEngine, kind: str, reports: list[dict[str, Any]], finish_previous: Finish | None
) -> Finish:
    control, run_id = chaos.control, "chaos-2-worker"
    if finish_previous:
        finish_previous()
    # 2. Worker SIGKILL while CreateImage calls are in flight (the emulator answers them 8 s late).
    started = time.monotonic()
    control.add_fault("CreateImage", latency=CREATE_LATENCY_SECONDS)
    creates_before = len(control.journal("CreateImage"))
    chaos.trigger(run_id, 2)
    engine.wait_until(lambda: chaos.workers_calling() >= 3, "CreateImage calls in flight", timeout=240)
    killed = kill_workers_in_create_image(engine, chaos.port)
    control.clear_faults()
    if kind == "postgres-celery":
        time.sleep(TRIGGERER_DOWN_SECONDS)
        engine.restart("celery-worker")
    wait_for_every_build(chaos, run_id)

    def finish() -> None:
        chaos.wait_until_finished(run_id, timeout=360)
        arns = {arn for run_arns in chaos.images(run_id).values() for arn in run_arns}
        creates = [entry for entry in control.journal("CreateImage")[creates_before:] if entry["image_arn"] in arns]
        arns_by_token: dict[str, set[str]] = {}
        for entry in creates:
            arns_by_token.setdefault(entry["client_token"], set()).add(entry["image_arn"])
        resent = len(creates) - len(arns_by_token)
        reports.append(chaos.check("worker-sigkill", run_id, started, killed=killed, resent_creates=resent))
        assert killed >= 1 and reports[-1]["retried"] >= 1, reports[-1]
        assert all(len(arns) == 1 for arns in arns_by_token.values())  # a re-sent token named the first build

    return finish


def step_outage(
    chaos: ChaosRun, engine: AirflowEngine, kind: str, reports: list[dict[str, Any]], finish_previous: Finish | None
) -> Finish:
    control, run_id = chaos.control, "chaos-3-outage"
    if finish_previous:
        finish_previous()
    # 3. Service outage: 503 for every call, then dropped connections, while half the tasks create and half wait.
    started = time.monotonic()
    chaos.trigger(run_id, 3)
    engine.wait_until(lambda: chaos.states(run_id).count("deferred") >= TASKS // 2, "half the tasks to defer", 240)
    outage_from = len(control.journal())
    control.start_outage("unavailable")
    time.sleep(OUTAGE_SECONDS / 2)
    control.start_outage("drop")
    time.sleep(OUTAGE_SECONDS / 2)
    control.end_outage()
    refused = control.journal()[outage_from:]
    wait_for_every_build(chaos, run_id)

    def finish() -> None:
        chaos.wait_until_finished(run_id)
        reports.append(
            chaos.check(
                "service-outage",
                run_id,
                started,
                outage_seconds=OUTAGE_SECONDS,
                answered_503=sum(1 for entry in refused if entry["status"] == 503),
                dropped=sum(1 for entry in refused if entry["outcome"] == "connection-dropped"),
            )
        )

    return finish


def step_database(
    chaos: ChaosRun, engine: AirflowEngine, kind: str, reports: list[dict[str, Any]], finish_previous: Finish | None
) -> Finish:
    run_id = "chaos-4-database"
    if finish_previous:
        finish_previous()
    # 4. Database restart: PostgreSQL down 15 s while the tasks create and wait (PostgreSQL only).
    started = time.monotonic()
    chaos.trigger(run_id, 4)
    engine.wait_until(lambda: chaos.states(run_id).count("deferred") >= TASKS // 2, "half the tasks to defer", 240)
    # Airflow's processes exit when they lose the database; the deployment restarts them, as docker-compose.yaml
    # (restart: always) or a Kubernetes Deployment does.
    engine.restart_always, engine.restarted = True, []
    engine.restart_database(DATABASE_DOWN_SECONDS)
    wait_for_every_build(chaos, run_id)

    def finish() -> None:
        chaos.wait_until_finished(run_id, timeout=480)
        engine.restart_always = False
        reports.append(chaos.check("database-restart", run_id, started, restarted=engine.restarted))

    return finish


def step_credentials(
    chaos: ChaosRun, engine: AirflowEngine, kind: str, reports: list[dict[str, Any]], finish_previous: Finish | None
) -> None:
    control, run_id = chaos.control, "chaos-5-credentials"
    # 5. Credentials revoked mid-wait: every waiting task fails at its next poll with the permission hint; access
    #    restored and the tasks cleared, they follow their builds to AVAILABLE without starting new ones.
    started = time.monotonic()
    control.hold_builds()
    chaos.trigger(run_id, 5)
    overlapped = finish_meanwhile(finish_previous, started)
    chaos.wait_for_states(run_id, {"deferred"}, "all tasks to defer")
    released_from = len(control.journal())
    control.release_builds()
    # Mid-wait: every trigger has read its build since the release, and every deferring task process has exited.
    engine.wait_until(
        lambda: len(chaos.polled(released_from)) == TASKS and chaos.task_processes() == 0,
        "every wait to poll its build after the release",
        timeout=120,
    )
    denied_from = len(control.journal())
    control.deny_access_key(ACCESS_KEY)
    chaos.wait_for_states(run_id, {"failed"}, "every waiting task to fail", timeout=180)
    denied = [entry for entry in control.journal()[denied_from:] if entry["status"] == 403]
    raced = chaos.requeue_races(run_id)
    reports.append(
        chaos.check(
            "credentials-revoked",
            run_id,
            started,
            failed=TASKS,
            overlapped=overlapped,
            denied_calls=len(denied),
            requeue_races=raced,
        )
    )
    instances = chaos.task_instances(run_id)
    # The first answer ends each wait: one denied GetImage per task, no Airflow retry (a permission error is not
    # retried) ...
    denied_gets = [entry["image_arn"] for entry in denied if entry["operation"] == "GetImage"]
    assert sorted(denied_gets) == sorted(set(denied_gets)) and len(denied_gets) == TASKS, denied
    # ... except where Airflow itself re-queued a resumed task and failed its try (docs/reliability.md):
    # that task's retry re-sent CreateImage, denied too.
    assert {index for index, (_, tries) in instances.items() if tries > 1} == set(raced), instances
    assert [entry["operation"] for entry in denied if entry["operation"] != "GetImage"] == ["CreateImage"] * len(raced)
    for index, (_, tries) in instances.items():
        log = engine.home / f"logs/dag_id={DAG_ID}/run_id={run_id}/task_id=build/map_index={index}/attempt={tries}.log"
        assert PERMISSION_HINT in log.read_text(errors="replace"), f"task {index}'s log does not name the connection"

    # Clear the run once Airflow has failed it, as a user does from the UI.  Cleared while the scheduler still had it
    # running (every task failed, the run's state not yet updated), Airflow leaves the run's state to the scheduler,
    # which may then fail the run from task states it read before the clear: the cleared tasks are never scheduled.
    engine.wait_until(lambda: engine.runs(DAG_ID).get(run_id) == "failed", f"run {run_id} to fail", timeout=60)
    started = time.monotonic()
    images_before = chaos.images(run_id)
    control.allow_access_key(ACCESS_KEY)
    engine.api(
        "POST", f"/dags/{DAG_ID}/clearTaskInstances", {"dry_run": False, "only_failed": True, "dag_run_id": run_id}
    )
    chaos.wait_until_finished(run_id)
    reports.append(chaos.check("credentials-restored", run_id, started))
    assert chaos.images(run_id) == images_before  # no new builds


STEPS_BY_NUMBER: dict[str, Callable[..., Finish | None]] = {
    "1": step_triggerer,
    "2": step_worker,
    "3": step_outage,
    "4": step_database,
    "5": step_credentials,
}


# One engine per run: the distributed one where CI provides it, SQLite otherwise (each takes minutes).
@pytest.mark.parametrize("kind", engines()[-1:])
def test_chaos(tmp_path: Path, kind: str):
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(DAG_FILE, dags)
    config = {
        "IB_CHAOS_TASKS": str(TASKS),
        "IB_CHAOS_TIME_SCALE": str(TIME_SCALE),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_SECONDS),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        # Deferred tasks hold no executor slot: 8 task processes at a time keep two cores from thrashing (32, the
        # default, had DAG file imports time out while 32 tasks started at once).  CeleryExecutor: the worker runs
        # the 8 and the scheduler may queue 16, as it counts a killed worker's tasks as running until their
        # heartbeat times out; with 8 the restarted worker had nothing to take until then (step 2).
        "AIRFLOW__CORE__PARALLELISM": str(TASK_PROCESSES if kind == "sqlite-local" else 2 * TASK_PROCESSES),
        # A task supervisor often sees its task's sockets close before the process has exited; it then finds the
        # exit only at its next wake-up, min_heartbeat_interval (5 s by default) later, and holds the executor slot
        # until then: 5 s idle after each ~1 s start or resume of a deferrable task.  1 s keeps the slot busy
        # for the work; 15 failed heartbeats at 1 s tolerate an API outage as long as the default 3 at 5 s.
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        "AIRFLOW__WORKERS__MAX_FAILED_HEARTBEATS": "15",
        # CeleryExecutor: the worker imports the provider's operators (and with them boto3 and the Amazon provider)
        # once at start; each task process it forks then parses the DAG file without importing them again, which
        # was most of the CPU of a task's start or resume.
        "AIRFLOW__CELERY__EXTRA_CELERY_CONFIG": json.dumps({"imports": ["airflow_imagebuilder.operators"]}),
        # A Celery message taken by a worker that dies with the database is lost, its task left queued: a restarted
        # scheduler adopts the task after orphaned_tasks_check_interval (300 s by default) and requeues it after
        # task_queued_timeout (600 s by default); docs/reliability.md: "Reliability, measured".
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
    }
    with emulator_process(phase_seconds=PHASE_SECONDS, log_dir=tmp_path) as emulator:
        connection = aws_connection_uri(emulator.endpoint_url, access_key_id=ACCESS_KEY)
        engine = AirflowEngine(
            tmp_path,
            connection,
            kind,
            dags_folder=dags,
            dag_ids=[DAG_ID],
            config=config,
            celery_concurrency=TASK_PROCESSES,
        )
        with engine:
            engine.cli("dags", "unpause", DAG_ID)
            chaos = ChaosRun(engine, emulator.endpoint_url)
            reports = run_steps(chaos, engine, kind, STEPS)
    expected = {
        "1": ["triggerer-sigkill"],
        "2": ["worker-sigkill"],
        "3": ["service-outage"],
        "4": ["database-restart"] if kind == "postgres-celery" else [],
        "5": ["credentials-revoked", "credentials-restored"],
    }
    assert [report["step"] for report in reports] == [name for step in STEPS for name in expected[step]]
