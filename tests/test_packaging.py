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


def test_the_documentation_url_is_pyprojects():
    # Airflow 3.2+ shows [project.urls] Documentation of the installed distribution, older ones the provider info's
    url = get_provider_info()["documentation-url"]
    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert url.startswith("https://") and f'Documentation = "{url}"' in pyproject


def test_package_ships_type_information():
    import airflow_imagebuilder

    assert (Path(airflow_imagebuilder.__file__).parent / "py.typed").exists()
