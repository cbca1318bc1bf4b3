"""docker-compose.yaml checked statically (no container engine runs here): services, images, wiring, dags.

The one step that does run is the events init command, against a local moto server instead of the `moto` service.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from airflow_imagebuilder.testing.events import EVENT_SOURCE, STATE_CHANGE_DETAIL_TYPE
from airflow_imagebuilder.testing.processes import local_client, moto_process

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]
AIRFLOW_SERVICES = [
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-init",
]
EVENTS_INIT = "imagebuilder-events-init"
ONE_SHOT = {"airflow-init", EVENTS_INIT}
LONG_RUNNING = [name for name in SERVICES if name not in ONE_SHOT]
#: Where the events init script is in the image: docker/Dockerfile copies the repository there.
IMAGE_SOURCE = "/opt/airflow-imagebuilder/"
MOTO_ACCOUNT = "123456789012"


def test_the_whole_stack_is_there():
    assert set(SERVICES) == {*AIRFLOW_SERVICES, "postgres", "redis", "imagebuilder-emulator", "moto", EVENTS_INIT}


def test_airflow_services_use_the_official_image_with_the_provider_installed():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert re.search(r"^ARG AIRFLOW_IMAGE=apache/airflow:3\.\d+\.\d+", dockerfile, re.MULTILINE)
    assert "FROM ${AIRFLOW_IMAGE}" in dockerfile
    assert re.search(r"pip install .*/opt/airflow-imagebuilder", dockerfile, re.DOTALL)
    for name in [*AIRFLOW_SERVICES, "imagebuilder-emulator", "moto", EVENTS_INIT]:
        service = SERVICES[name]
        assert service["build"] == {"context": ".", "dockerfile": "docker/Dockerfile"}, name
        assert service["image"] == "airflow-imagebuilder:local", name


def test_the_image_installs_the_locked_versions_on_the_locked_airflow():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    lock = "locks/airflow-newest.txt"
    assert f"--constraint /opt/airflow-imagebuilder/{lock}" in dockerfile
    image_airflow = re.search(r"^ARG AIRFLOW_IMAGE=apache/airflow:([\d.]+)-", dockerfile, re.MULTILINE)
    locked_airflow = re.search(r"^apache-airflow==([\d.]+)$", (ROOT / lock).read_text(), re.MULTILINE)
    assert image_airflow and locked_airflow
    assert image_airflow[1] == locked_airflow[1], "the image's Airflow differs from the lock's: update AIRFLOW_IMAGE"


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_every_long_running_service_has_a_healthcheck(name):
    check = SERVICES[name]["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) >= 2


def test_dependencies_exist_and_wait_for_health():
    for name, service in SERVICES.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            expected = "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            assert condition == {"condition": expected}, (name, dependency)
    for name in AIRFLOW_SERVICES:
        assert {"postgres", "redis", "imagebuilder-emulator", "moto", EVENTS_INIT} <= set(
            SERVICES[name]["depends_on"]
        ), name


def test_environment_wires_database_broker_and_aws_connection_to_the_services():
    environment = SERVICES["airflow-scheduler"]["environment"]
    assert environment["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    postgres = SERVICES["postgres"]["environment"]
    user, password, database = postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"]
    assert (
        environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        == f"postgresql+psycopg2://{user}:{password}@postgres/{database}"
    )
    assert (
        environment["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
        and "@redis:6379" in environment["AIRFLOW__CELERY__BROKER_URL"]
    )
    assert environment["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    connection = json.loads(environment["AIRFLOW_CONN_AWS_DEFAULT"])
    assert connection["conn_type"] == "aws"
    extra = connection["extra"]
    emulator_command = SERVICES["imagebuilder-emulator"]["command"]
    emulator_port = emulator_command[emulator_command.index("--port") + 1]
    assert emulator_command[:3] == ["python", "-m", "airflow_imagebuilder.testing"]
    assert "0.0.0.0" in emulator_command  # reachable from the other containers
    assert extra["service_config"]["imagebuilder"]["endpoint_url"] == f"http://imagebuilder-emulator:{emulator_port}"
    moto_command = SERVICES["moto"]["command"]
    moto_port = moto_command[moto_command.index("-p") + 1]
    assert extra["endpoint_url"] == f"http://moto:{moto_port}"
    assert extra["service_config"]["sts"]["endpoint_url"] == f"http://moto:{moto_port}"
    for name in [*AIRFLOW_SERVICES]:
        assert SERVICES[name]["environment"]["AIRFLOW_CONN_AWS_DEFAULT"] == environment["AIRFLOW_CONN_AWS_DEFAULT"]


def test_example_dags_are_mounted():
    for name in AIRFLOW_SERVICES:
        assert "./dags:/opt/airflow/dags" in SERVICES[name]["volumes"], name
    dags = {path.name for path in (ROOT / "dags").glob("*.py")}
    assert {"imagebuilder_golden_ami.py", "imagebuilder_weekly_rebuild.py", "imagebuilder_rollout.py"} <= dags


def test_api_server_is_published_and_commands_are_right():
    assert "8080:8080" in SERVICES["airflow-apiserver"]["ports"]
    commands = {name: SERVICES[name]["command"] for name in AIRFLOW_SERVICES}
    assert commands["airflow-apiserver"] == "api-server" and commands["airflow-scheduler"] == "scheduler"
    assert commands["airflow-dag-processor"] == "dag-processor" and commands["airflow-triggerer"] == "triggerer"
    assert commands["airflow-worker"] == "celery worker"


def moto_endpoint() -> str:
    command = SERVICES["moto"]["command"]
    return f"http://moto:{command[command.index('-p') + 1]}"


def option_values(command: list[str], option: str) -> list[str]:
    return [command[index + 1] for index, word in enumerate(command) if word == option]


def events_init_command() -> list[str]:
    """The init service's command, with the script's path in the image mapped to the repository."""
    command = SERVICES[EVENTS_INIT]["command"]
    assert command[0] == "python" and command[1].startswith(IMAGE_SOURCE), command
    return [sys.executable, str(ROOT / command[1].removeprefix(IMAGE_SOURCE)), *command[2:]]


def test_the_emulator_sends_state_change_events_to_motos_eventbridge():
    emulator = SERVICES["imagebuilder-emulator"]
    assert option_values(emulator["command"], "--events-endpoint-url") == [moto_endpoint()]
    assert emulator["depends_on"] == {"moto": {"condition": "service_healthy"}}


def test_airflow_reads_the_queues_the_events_init_wires():
    command = SERVICES[EVENTS_INIT]["command"]
    assert option_values(command, "--endpoint-url") == [moto_endpoint()]
    assert SERVICES[EVENTS_INIT]["depends_on"] == {"moto": {"condition": "service_healthy"}}
    queues = {f"{moto_endpoint()}/{MOTO_ACCOUNT}/{name}" for name in option_values(command, "--queue")}
    environment = SERVICES["airflow-triggerer"]["environment"]
    waits = environment["AIRFLOW_VAR_IMAGEBUILDER_EVENTS_QUEUE_URL"]
    watcher = environment["IMAGEBUILDER_EVENTS_QUEUE_URL"]
    # The AssetWatcher deletes the events it does not fire for: it must not share the waits' queue.
    assert {waits, watcher} == queues and waits != watcher
    for name in AIRFLOW_SERVICES:
        assert SERVICES[name]["environment"]["AIRFLOW_VAR_IMAGEBUILDER_EVENTS_QUEUE_URL"] == waits, name
        assert SERVICES[name]["environment"]["IMAGEBUILDER_EVENTS_QUEUE_URL"] == watcher, name


def test_the_nightly_dag_waits_on_the_variables_queue():
    spec = importlib.util.spec_from_file_location("nightly_dag", ROOT / "dags" / "imagebuilder_pipeline_nightly.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    operator = module.dag.get_task("run_pipeline")
    assert operator.deferrable
    # AIRFLOW_VAR_IMAGEBUILDER_EVENTS_QUEUE_URL is the Variable imagebuilder_events_queue_url.
    assert "var.value.get('imagebuilder_events_queue_url', '')" in operator.completion_queue_url


def test_the_events_init_command_wires_every_queue_and_can_run_again(tmp_path):
    command = events_init_command()
    with moto_process(log_dir=tmp_path) as moto:
        local = [moto.endpoint_url if word == moto_endpoint() else word for word in command]
        for _ in range(2):  # `docker compose up` runs it again on every start
            printed = subprocess.run(local, capture_output=True, text=True, check=True).stdout.split()
        names = option_values(command, "--queue")
        assert printed == [f"{moto.endpoint_url}/{MOTO_ACCOUNT}/{name}" for name in names]
        local_client("events", moto.endpoint_url).put_events(
            Entries=[
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": STATE_CHANGE_DETAIL_TYPE,
                    "Resources": [f"arn:aws:imagebuilder:us-east-1:{MOTO_ACCOUNT}:image/golden-base/1.0.0/1"],
                    "Detail": json.dumps(
                        {"previous-state": {"status": "INTEGRATING"}, "state": {"status": "AVAILABLE"}}
                    ),
                }
            ]
        )
        sqs = local_client("sqs", moto.endpoint_url)
        for queue_url in printed:
            [message] = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=5)["Messages"]
            assert json.loads(message["Body"])["detail"]["state"]["status"] == "AVAILABLE"
