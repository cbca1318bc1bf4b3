"""docker-compose.yaml checked statically (no container engine runs here): services, images, wiring, dags."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

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
LONG_RUNNING = [name for name in SERVICES if name != "airflow-init"]


def test_the_whole_stack_is_there():
    assert set(SERVICES) == {*AIRFLOW_SERVICES, "postgres", "redis", "imagebuilder-emulator", "moto"}


def test_airflow_services_use_the_official_image_with_the_provider_installed():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert re.search(r"^ARG AIRFLOW_IMAGE=apache/airflow:3\.\d+\.\d+", dockerfile, re.MULTILINE)
    assert "FROM ${AIRFLOW_IMAGE}" in dockerfile
    assert re.search(r"pip install .*/opt/airflow-imagebuilder", dockerfile)
    for name in [*AIRFLOW_SERVICES, "imagebuilder-emulator", "moto"]:
        service = SERVICES[name]
        assert service["build"] == {"context": ".", "dockerfile": "docker/Dockerfile"}, name
        assert service["image"] == "airflow-imagebuilder:local", name


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_every_long_running_service_has_a_healthcheck(name):
    check = SERVICES[name]["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) >= 2


def test_dependencies_exist_and_wait_for_health():
    for name, service in SERVICES.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            expected = "service_completed_successfully" if dependency == "airflow-init" else "service_healthy"
            assert condition == {"condition": expected}, (name, dependency)
    for name in AIRFLOW_SERVICES:
        assert {"postgres", "redis", "imagebuilder-emulator", "moto"} <= set(SERVICES[name]["depends_on"]), name


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
