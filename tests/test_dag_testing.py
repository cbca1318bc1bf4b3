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


CONTAINER_DAG_FILE = """
import pendulum
from airflow.sdk import DAG

from airflow_imagebuilder.operators import ImageBuilderCreateImageOperator

ARN = "arn:aws:imagebuilder:us-east-1:123456789012"

with DAG(dag_id="container_dag", schedule=None, start_date=pendulum.datetime(2026, 1, 1)):
    ImageBuilderCreateImageOperator(
        task_id="create",
        container_recipe_arn=f"{ARN}:container-recipe/golden-container/1.0.0",
        infrastructure_configuration_arn=f"{ARN}:infrastructure-configuration/golden-build",
        deferrable=DEFERRABLE,
    )
"""


def quiet_output(capfd: pytest.CaptureFixture[str]) -> str:
    """What the run printed, having checked that nothing was logged at warning or above: users grep task logs
    for "error", so a healthy run must give them nothing to find."""
    logged = capfd.readouterr()
    output = logged.out + logged.err
    loud = re.findall(r"^.*\[(?:warning|error|critical) *\].*$", output, re.M)
    assert not loud, "\n".join(loud)
    return output


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
    # seconds (about 15 here), not the 6 minutes of default waits; generous, as the machine may be busy
    assert took < 120, f"the run took {took:.1f}s"
    logged = quiet_output(capfd)
    # Airflow 3.0's dag.test() prints each log record twice, once as "[2026-12-07 05:44:17,978] ... INFO - ...":
    # count the other copy
    statuses = re.findall(r"^(?!\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,).*Image arn:\S+ is ([A-Z]+) \(", logged, re.M)
    # one line per transition of each wait, across the worker and the triggerer; when the operator waited, the
    # sensor's wait starts and ends with its one AVAILABLE line
    waits = [statuses] if not wait else [statuses[:-1], statuses[-1:]]
    for logged_by_one_wait in waits:
        assert logged_by_one_wait[-1] == "AVAILABLE" and len(set(logged_by_one_wait)) == len(logged_by_one_wait), (
            statuses
        )


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferred"])
def test_a_container_build_has_uris_by_region_and_no_ami_link(imagebuilder_dags, tmp_path, capfd, deferrable):
    (tmp_path / "container_dag.py").write_text(CONTAINER_DAG_FILE.replace("DEFERRABLE", str(deferrable)))
    run = imagebuilder_dags.run(tmp_path / "container_dag.py")
    assert run.task_states == {"create": "success"}
    by_region = run.xcom("create", "container_image_uris_by_region")
    assert list(by_region) == ["us-east-1"] and by_region["us-east-1"] == run.xcom("create", "container_image_uris")
    assert run.xcom("create", "_link_ImageBuilderImageLink")  # the image link is there, the AMI link is not
    assert run.xcom("create", "_link_ImageBuilderAmiLink") is None and run.xcom("create", "ami_ids") == {}
    quiet_output(capfd)
