"""The ``imagebuilder_dags`` fixture runs a user's DAG file, with its default waits, in seconds."""

from __future__ import annotations

import re
import time

import pytest

DAG_FILE = """
import pendulum
from airflow.sdk import DAG, task

from airflow_imagebuilder.operators import ImageBuilderCreateImageOperator
from airflow_imagebuilder.sensors import ImageBuilderImageSensor

ARN = "arn:aws:imagebuilder:us-east-1:123456789012"

with DAG(dag_id="own_dag", schedule=None, start_date=pendulum.datetime(2026, 1, 1)):
    create = ImageBuilderCreateImageOperator(
        task_id="create",
        image_recipe_arn=f"{ARN}:image-recipe/golden-base/1.0.0",
        infrastructure_configuration_arn=f"{ARN}:infrastructure-configuration/golden-build",
        aws_conn_id="aws_images",
        wait_for_completion=WAIT,
        deferrable=DEFERRABLE,
    )
    wait = ImageBuilderImageSensor(
        task_id="wait", image_build_version_arn=create.output, aws_conn_id="aws_images", deferrable=DEFERRABLE
    )

    @task
    def publish(**context):
        return context["ti"].xcom_pull(task_ids="wait", key="ami_ids")

    wait >> publish()
"""


@pytest.mark.parametrize(
    ("wait", "deferrable"), [(True, False), (True, True), (False, True)], ids=["sync", "deferred", "sensor-deferred"]
)
def test_a_dag_with_default_waits_reaches_available_in_seconds(
    imagebuilder_dags, tmp_path, monkeypatch, capfd, wait, deferrable
):
    monkeypatch.setenv("AIRFLOW_CONN_AWS_IMAGES", '{"conn_type": "aws"}')  # no endpoint_url: botocore's variable
    (tmp_path / "own_dag.py").write_text(DAG_FILE.replace("DEFERRABLE", str(deferrable)).replace("WAIT", str(wait)))
    started = time.monotonic()
    run = imagebuilder_dags.run(tmp_path / "own_dag.py")
    took = time.monotonic() - started
    assert run.state == "success"
    assert run.task_states == {"create": "success", "wait": "success", "publish": "success"}
    assert list(run.xcom("publish")) == ["us-east-1"]
    assert took < 30, f"the run took {took:.1f}s"  # seconds, not the 6 minutes of default waits
    logged = capfd.readouterr()
    statuses = re.findall(r"Image arn:\S+ is ([A-Z]+) \(", logged.out + logged.err)
    # one line per transition of each wait, across the worker and the triggerer; when the operator waited, the
    # sensor's wait starts and ends with its one AVAILABLE line
    waits = [statuses] if not wait else [statuses[:-1], statuses[-1:]]
    for logged_by_one_wait in waits:
        assert logged_by_one_wait[-1] == "AVAILABLE" and len(set(logged_by_one_wait)) == len(logged_by_one_wait), (
            statuses
        )
