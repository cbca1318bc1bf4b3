"""The example DAGs under a real scheduler, dag-processor, triggerer and api-server (and celery worker in CI)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from airflow_imagebuilder.testing import EmulatorControl
from airflow_imagebuilder.testing.events import wire_events_to_queue
from airflow_imagebuilder.testing.examples import seed_example_resources
from airflow_imagebuilder.testing.processes import aws_connection_uri, emulator_process, local_client, moto_process
from tests.engine import AirflowEngine, engines, example_deployment, run_golden_ami_chain

pytestmark = pytest.mark.slow
BACKFILL_WEEKS = ["2026-10-05", "2026-10-12", "2026-10-19"]
BACKFILL_NIGHTS = ["2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05", "2026-11-06"]


def images_by_tag(endpoint: str, tag: str) -> dict[str, list[str]]:
    """Image build version ARNs by the value of their tag ``tag``."""
    client = local_client("imagebuilder", endpoint)
    values: dict[str, list[str]] = {}
    for arn in EmulatorControl(endpoint).images():
        tags = client.get_image(imageBuildVersionArn=arn)["image"].get("tags", {})
        if tag in tags:
            values.setdefault(tags[tag], []).append(arn)
    return values


def images_by_week(endpoint: str) -> dict[str, list[str]]:
    return images_by_tag(endpoint, "patch-week")


STATUS_LINE = re.compile(r"Image arn:\S+ is ([A-Z]+) \(")


def log_lines(log: Path) -> list[dict[str, Any]]:
    """The lines of an Airflow 3 task or trigger log (JSON lines)."""
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def loud_lines(log: Path) -> list[str]:
    """The lines of a task or trigger log at warning level or above."""
    return [f"{log.name}: {line}" for line in log_lines(log) if line.get("level") in ("warning", "error", "critical")]


@pytest.mark.parametrize("kind", engines())
def test_examples_on_a_real_scheduler_and_triggerer(tmp_path: Path, kind: str):
    with example_deployment(tmp_path, kind) as deployment:
        emulator, moto, engine = deployment.emulator, deployment.moto, deployment.engine
        control = EmulatorControl(emulator.endpoint_url)
        # 1. the chain: create -> deferrable sensor (triggerer) -> SSM + Asset event -> rollout DAG
        engine.cli("dags", "unpause", "imagebuilder_rollout")
        run_golden_ami_chain(engine)
        engine.wait_for_runs("imagebuilder_rollout", 1)  # scheduled by the Asset event
        ssm = boto3.client("ssm", endpoint_url=moto.endpoint_url, region_name="us-east-1")
        ami = ssm.get_parameter(Name="/golden-ami/golden-base/latest")["Parameter"]["Value"]
        assert ami.startswith("ami-")
        # the deferred sensor really ran in the triggerer process
        trigger_logs = list((tmp_path / "logs").rglob("task_id=wait_for_image/*.log.trigger.*.log"))
        assert trigger_logs, "no triggerer log for the deferred sensor"
        trigger_log = trigger_logs[0].read_text()
        assert "Trigger fired event" in trigger_log and "is AVAILABLE" in trigger_log
        # a successful build logs nothing at warning or above, in the worker or the triggerer
        build_logs = list((tmp_path / "logs/dag_id=imagebuilder_golden_ami").rglob("task_id=*_image/*.log*"))
        assert len(build_logs) >= 3, build_logs  # the operator's, the sensor's and its trigger's
        assert not [line for log in build_logs for line in loud_lines(log)]
        # one line per status transition of the sensor's wait, across the worker and the triggerer
        wait_logs = sorted(log for log in build_logs if "task_id=wait_for_image" in str(log))
        events = sorted((line for log in wait_logs for line in log_lines(log)), key=lambda line: line["timestamp"])
        statuses = [match[1] for line in events if (match := STATUS_LINE.match(line.get("event", "")))]
        assert statuses[-1] == "AVAILABLE" and len(set(statuses)) == len(statuses), statuses

        # 2. backfill the weekly DAG over three logical dates: exactly one image per date
        engine.cli(
            "backfill",
            "create",
            "--dag-id",
            "imagebuilder_weekly_rebuild",
            "--from-date",
            "2026-10-05",
            "--to-date",
            "2026-10-20",
        )
        engine.cli("dags", "unpause", "imagebuilder_weekly_rebuild")

        engine.wait_for_runs("imagebuilder_weekly_rebuild", 3, prefix="backfill__")
        weeks = images_by_week(emulator.endpoint_url)
        assert {week: len(weeks.get(week, [])) for week in BACKFILL_WEEKS} == dict.fromkeys(BACKFILL_WEEKS, 1)

        # 3. clear and rerun one date: no new image, the rerun reuses that week's image
        creates_before = len(control.journal("CreateImage"))
        engine.cli(
            "tasks",
            "clear",
            "imagebuilder_weekly_rebuild",
            "--yes",
            "--start-date",
            "2026-10-12T04:00:00+00:00",
            "--end-date",
            "2026-10-12T04:00:00+00:00",
        )
        engine.wait_until(
            lambda: (
                engine.query(
                    "select try_number, state from task_instance where dag_id = 'imagebuilder_weekly_rebuild' "
                    "and run_id = 'backfill__2026-10-12T04:00:00+00:00'"
                )
                == [(2, "success")]
            ),
            "the cleared week to run again",
        )
        assert len(images_by_week(emulator.endpoint_url)["2026-10-12"]) == 1
        assert len(control.journal("CreateImage")) > creates_before  # it did call CreateImage (same token)
        week_tokens = {
            entry["client_token"]
            for entry in control.journal("CreateImage")
            if entry["image_arn"] in images_by_week(emulator.endpoint_url)["2026-10-12"]
        }
        assert len(week_tokens) == 1

        # 4. a user clears the task while it is deferred: the triggerer's on_kill cancels the build
        #    (Airflow 3.3+), and the task builds anew since that build is CANCELLED. The new try may start
        #    before the triggerer has cancelled (an Airflow race), follow the doomed build and fail once on
        #    CANCELLED; its retry then builds anew.
        control.set_phase_seconds(60)
        date = "2026-11-25T04:00:00+00:00"
        engine.cli("dags", "trigger", "imagebuilder_weekly_rebuild", "--logical-date", date)
        engine.wait_until(
            lambda: (
                engine.query(
                    "select ti.state from task_instance ti join dag_run dr on dr.run_id = ti.run_id "
                    "and dr.dag_id = ti.dag_id where dr.dag_id = 'imagebuilder_weekly_rebuild' "
                    "and dr.run_type = 'manual'"
                )
                == [("deferred",)]
            ),
            "the manual run's task to defer",
        )
        control.set_phase_seconds(1)
        engine.cli("tasks", "clear", "imagebuilder_weekly_rebuild", "--yes", "--start-date", date, "--end-date", date)
        engine.wait_until(
            lambda: (
                sorted(control.images()[arn] for arn in images_by_week(emulator.endpoint_url).get("2026-11-25", []))
                == ["AVAILABLE", "CANCELLED"]
            ),
            "the cleared deferred build to be cancelled and rebuilt",
        )
        assert len(control.journal("CancelImageCreation")) == 1
        engine.wait_for_runs("imagebuilder_weekly_rebuild", 1, prefix="manual__")
        engine.cli("dags", "pause", "imagebuilder_weekly_rebuild")

        # 5. backfill five nights of the pipeline DAG: one pipeline execution per night, AMIs published
        control.set_phase_seconds(1)
        engine.cli(
            "backfill",
            "create",
            "--dag-id",
            "imagebuilder_pipeline_nightly",
            "--from-date",
            BACKFILL_NIGHTS[0],
            "--to-date",
            BACKFILL_NIGHTS[-1] + "T03:00:00+00:00",
        )
        engine.cli("dags", "unpause", "imagebuilder_pipeline_nightly")
        engine.wait_for_runs("imagebuilder_pipeline_nightly", len(BACKFILL_NIGHTS), prefix="backfill__")
        engine.cli("dags", "pause", "imagebuilder_pipeline_nightly")  # catchup would go on to today
        nights = images_by_tag(emulator.endpoint_url, "night")
        assert {night: len(nights.get(night, [])) for night in BACKFILL_NIGHTS} == dict.fromkeys(BACKFILL_NIGHTS, 1)
        assert all(len(arns) == 1 for arns in nights.values())  # catchup nights too: one execution each
        ami = ssm.get_parameter(Name="/golden-ami/nightly/latest")["Parameter"]["Value"]
        assert ami.startswith("ami-")


@pytest.mark.parametrize("kind", engines())
def test_an_asset_watcher_starts_the_rollout_once_per_available_image(tmp_path: Path, kind: str):
    """Image Builder's own events start a DAG: only for AVAILABLE images of the watched pipeline, once each."""
    with moto_process(log_dir=tmp_path) as moto:
        events, sqs = local_client("events", moto.endpoint_url), local_client("sqs", moto.endpoint_url)
        queue_url = wire_events_to_queue(events, sqs, "rollout-events")
        with emulator_process(phase_seconds=1.0, log_dir=tmp_path, events_endpoint_url=moto.endpoint_url) as emulator:
            imagebuilder = local_client("imagebuilder", emulator.endpoint_url)
            arns = seed_example_resources(imagebuilder)
            other = imagebuilder.create_image_pipeline(
                name="other-nightly",
                imageRecipeArn=arns["recipe"],
                infrastructureConfigurationArn=arns["infrastructure"],
            )["imagePipelineArn"]
            connection = aws_connection_uri(emulator.endpoint_url, moto.endpoint_url)
            config = {"IMAGEBUILDER_EVENTS_QUEUE_URL": queue_url, "IMAGEBUILDER_EVENTS_PIPELINE_ARN": arns["pipeline"]}
            dag_id = "imagebuilder_rollout_on_event"
            with AirflowEngine(tmp_path, connection, kind, dag_ids=[dag_id], config=config) as engine:
                engine.cli("dags", "unpause", dag_id)
                engine.wait_until(
                    lambda: (
                        engine.query("select count(*) from trigger where classpath like '%ImageEventTrigger'") == [(1,)]
                    ),
                    "the triggerer to watch the queue",
                )
                EmulatorControl(emulator.endpoint_url).fail_next_builds("BUILDING", reason="boom")
                starts = [
                    imagebuilder.start_image_pipeline_execution(imagePipelineArn=pipeline, clientToken=token)
                    for pipeline, token in ((arns["pipeline"], "fails"), (arns["pipeline"], "builds"), (other, "x"))
                ]
                engine.wait_for_runs(dag_id, 1)
                time.sleep(15)  # every build has ended and its events were read: no second run may follow
                assert list(engine.runs(dag_id).values()) == ["success"]
                good = starts[1]["imageBuildVersionArn"]
                assert EmulatorControl(emulator.endpoint_url).images()[good] == "AVAILABLE"
                [(extra,)] = engine.query("select extra from asset_event")
                payload = (json.loads(extra) if isinstance(extra, str) else extra)["payload"]
                assert payload["image_build_version_arn"] == good and set(payload["ami_ids"]) == {
                    "us-east-1",
                    "eu-west-1",
                }
