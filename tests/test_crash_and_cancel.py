"""Worker crash right after CreateImage, and cancel on kill: real processes, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airflow_imagebuilder.testing import EmulatorControl
from airflow_imagebuilder.testing.examples import seed_example_resources
from airflow_imagebuilder.testing.processes import emulator_process, local_client
from tests.conftest import TESTS, aws_connection

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("airflow_db")]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def task_process(
    endpoint: str, logical_date: str, log: Path, task: tuple[str, str] = ("ib_create_and_wait", "create"), **env: str
) -> subprocess.Popen[bytes]:
    """``airflow tasks test`` of a task (the create task by default), as a separate process (the test's DB)."""
    return subprocess.Popen(
        [AIRFLOW, "tasks", "test", *task, logical_date],
        env={**os.environ, "AIRFLOW_CONN_AWS_DEFAULT": aws_connection(endpoint), **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=TESTS.parent,
    )


def wait_for(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_worker_killed_right_after_create_image_retry_follows_the_same_build(tmp_path):
    with emulator_process(phase_seconds=3.0, log_dir=tmp_path) as emulator:
        control = EmulatorControl(emulator.endpoint_url)
        first = task_process(emulator.endpoint_url, "2026-06-01", tmp_path / "first.log", IB_WAIT="1")
        wait_for(lambda: [e for e in control.journal("CreateImage") if e["outcome"] == "ok"], "CreateImage")
        first.send_signal(signal.SIGKILL)  # the worker dies with the build in flight, no on_kill
        first.wait()
        [arn] = control.images()
        assert control.images()[arn] != "CANCELLED"

        retry = task_process(emulator.endpoint_url, "2026-06-01", tmp_path / "retry.log", IB_WAIT="1")
        assert retry.wait(timeout=180) == 0, (tmp_path / "retry.log").read_text()[-3000:]
        creates = control.journal("CreateImage")
        assert control.images() == {arn: "AVAILABLE"}  # no second image: the retry followed the first build
        assert len(creates) == 2 and len({entry["client_token"] for entry in creates}) == 1
        assert f"Following image {arn}" in (tmp_path / "retry.log").read_text()


def test_sigterm_during_sync_wait_cancels_and_the_retry_builds_anew(tmp_path):
    with emulator_process(phase_seconds=30.0, log_dir=tmp_path) as emulator:
        control = EmulatorControl(emulator.endpoint_url)
        task = task_process(emulator.endpoint_url, "2026-06-02", tmp_path / "killed.log", IB_WAIT="1")
        wait_for(lambda: control.journal("GetImage"), "the sync wait to start polling")
        task.send_signal(signal.SIGTERM)  # what Airflow sends when the task is killed or marked failed
        task.wait(timeout=60)
        [arn] = control.images()
        assert control.images()[arn] == "CANCELLED"
        assert [entry["image_arn"] for entry in control.journal("CancelImageCreation")] == [arn]

        control.set_phase_seconds(0.05)
        retry = task_process(emulator.endpoint_url, "2026-06-02", tmp_path / "retry.log", IB_WAIT="1")
        assert retry.wait(timeout=180) == 0, (tmp_path / "retry.log").read_text()[-3000:]
        statuses = sorted(control.images().values())
        assert statuses == ["AVAILABLE", "CANCELLED"]  # a new build after CANCELLED; nothing left running


def test_force_rebuild_retry_after_a_crash_reuses_the_build_its_own_try_finished(tmp_path):
    """A worker killed after its forced build became AVAILABLE: the retry reuses that build, never a second one."""
    with emulator_process(phase_seconds=0.4, log_dir=tmp_path) as emulator:
        control = EmulatorControl(emulator.endpoint_url)
        control.add_fault("GetImage", latency=3.0)  # each poll is slow, so the kill lands before the task ends
        first = task_process(
            emulator.endpoint_url, "2026-06-03", tmp_path / "first.log", IB_WAIT="1", IB_FORCE_REBUILD="1"
        )
        wait_for(lambda: set(control.images().values()) == {"AVAILABLE"}, "the forced build to be AVAILABLE")
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert "is AVAILABLE: AMIs" not in (tmp_path / "first.log").read_text()  # killed before it finished
        [arn] = control.images()

        control.clear_faults()
        retry = task_process(
            emulator.endpoint_url, "2026-06-03", tmp_path / "retry.log", IB_WAIT="1", IB_FORCE_REBUILD="1"
        )
        assert retry.wait(timeout=180) == 0, (tmp_path / "retry.log").read_text()[-3000:]
        assert control.images() == {arn: "AVAILABLE"}
        assert f"Reusing image {arn}" in (tmp_path / "retry.log").read_text()


def test_worker_killed_while_waiting_for_a_pipeline_execution_the_retry_follows_it(tmp_path):
    with emulator_process(phase_seconds=4.0, log_dir=tmp_path, strict=True) as emulator:
        seed_example_resources(local_client("imagebuilder", emulator.endpoint_url))
        control = EmulatorControl(emulator.endpoint_url)
        start = ("ib_pipeline_run", "start")
        first = task_process(emulator.endpoint_url, "2026-06-04", tmp_path / "first.log", start)
        wait_for(lambda: len(control.journal("GetImage")) >= 2, "the wait for the pipeline's image to start")
        first.send_signal(signal.SIGKILL)
        first.wait()
        [arn] = control.images()

        retry = task_process(emulator.endpoint_url, "2026-06-04", tmp_path / "retry.log", start)
        assert retry.wait(timeout=180) == 0, (tmp_path / "retry.log").read_text()[-3000:]
        assert control.images() == {arn: "AVAILABLE"}  # one execution: the retry followed it
        starts = control.journal("StartImagePipelineExecution")
        assert len(starts) == 2 and len({entry["client_token"] for entry in starts}) == 1
        assert f"Following image {arn}" in (tmp_path / "retry.log").read_text()
