"""The installed package is an Airflow provider: Airflow lists it, with its extra link and modules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from airflow_imagebuilder.provider_info import get_provider_info


def test_airflow_providers_list_shows_the_provider(tmp_path):
    # Airflow 3.0 logs INFO lines to stdout before the JSON
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"}
    airflow = str(Path(sys.executable).with_name("airflow"))
    listed = subprocess.run(
        [airflow, "providers", "list", "-o", "json"], env=env, capture_output=True, text=True, check=True
    )
    providers = {entry["package_name"]: entry for entry in json.loads(listed.stdout)}
    assert providers["airflow-imagebuilder"]["version"] == get_provider_info()["versions"][0]
    links = subprocess.run(
        [airflow, "providers", "links", "-o", "json"], env=env, capture_output=True, text=True, check=True
    )
    assert "airflow_imagebuilder.links.ImageBuilderImageLink" in links.stdout


def test_package_ships_type_information():
    import airflow_imagebuilder

    assert (Path(airflow_imagebuilder.__file__).parent / "py.typed").exists()


#: What a DAG processor never needs for a DAG without a scan gate or api_retry: loaded on a task's first use
#: (airflow_imagebuilder/lazy.py).
EXECUTION_MODULES = [
    "async_clients",
    "diagnostics",
    "exceptions",
    "lineage",
    "models",
    "outputs",
    "retry",
    "token",
    "triggers",
    "waiting",
]


def test_parsing_a_dag_loads_none_of_the_execution_machinery():
    code = """
import json, sys
import pendulum
from airflow.sdk import DAG
from airflow_imagebuilder.operators import ImageBuilderCreateImageOperator, ImageBuilderStartPipelineExecutionOperator
from airflow_imagebuilder.sensors import ImageBuilderImageSensor

arn = "arn:aws:imagebuilder:us-east-1:123456789012:"
with DAG("parse", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    build = ImageBuilderCreateImageOperator(
        task_id="build",
        image_recipe_arn=arn + "image-recipe/r/1.0.0",
        infrastructure_configuration_arn=arn + "infrastructure-configuration/i",
        tags={"run": "{{ run_id }}"},
        deferrable=True,
    )
    ImageBuilderCreateImageOperator(
        task_id="build_with_literal_tags",
        container_recipe_arn=arn + "container-recipe/c/1.x.x",
        infrastructure_configuration_arn=arn + "infrastructure-configuration/i",
        tags={"team": "platform"},
    )
    ImageBuilderImageSensor(task_id="wait", image_build_version_arn=build.output, mode="reschedule")
    ImageBuilderStartPipelineExecutionOperator(
        task_id="pipeline", image_pipeline_arn=arn + "image-pipeline/nightly", tags={"team": "platform"}
    )
loaded = [name for name in sys.argv[1:] if "airflow_imagebuilder." + name in sys.modules]
print(json.dumps(loaded))
"""
    command = [sys.executable, "-c", code, *EXECUTION_MODULES]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_a_lazy_module_loads_on_first_use_once_across_threads():

    code = """
import json, sys, threading
from airflow_imagebuilder.lazy import LazyModule
waiting = LazyModule("airflow_imagebuilder.waiting")
before = "airflow_imagebuilder.waiting" in sys.modules
seen = []
threads = [threading.Thread(target=lambda: seen.append(waiting.next_step)) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps([before, len(seen), len({id(item) for item in seen}), repr(waiting)]))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, count, distinct, text = json.loads(result.stdout.strip().splitlines()[-1])
    assert (before, count, distinct) == (False, 8, 1)
    assert text == "<lazy module 'airflow_imagebuilder.waiting' (loaded)>"
