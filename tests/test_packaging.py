"""The installed package is an Airflow provider: Airflow lists it, with its extra link and modules; the release
builds, passes PyPI's checks and installs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import airflow_imagebuilder
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


ROOT = Path(__file__).resolve().parents[1]
UV = ROOT / ".venv-uv/bin/uv"  # the pinned uv every make target installs with


@pytest.mark.slow
def test_the_release_installs_outside_the_checkout(tmp_path):
    """``make dist`` (sdist + wheel, ``twine check --strict``); the wheel, installed into a clean virtualenv with
    the lock's versions, is the provider Airflow lists, at the version the package declares."""
    assert UV.exists(), "make venv installs the pinned uv this test builds and installs with"
    subprocess.run(["make", "-C", str(ROOT), "dist"], check=True, capture_output=True)
    with tarfile.open(next((ROOT / "dist").glob("*.tar.gz"))) as sdist:
        shipped = {Path(name).relative_to(Path(name).parts[0]).as_posix() for name in sdist.getnames()}
    assert {"README.md", "LICENSE", "CHANGELOG.md", "airflow_imagebuilder/py.typed"} <= shipped
    wheel = next((ROOT / "dist").glob("*.whl"))

    venv = tmp_path / "venv"
    subprocess.run([str(UV), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    lock = ROOT / "locks/airflow-newest.txt"
    install = [str(UV), "pip", "install", "--quiet", "--python", str(venv / "bin/python"), "--constraint", str(lock)]
    subprocess.run([*install, str(wheel)], check=True, cwd=tmp_path)
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "home"), "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"}
    env.pop("PYTHONPATH", None)
    listed = subprocess.run(
        [str(venv / "bin/airflow"), "providers", "list", "-o", "json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    providers = {entry["package_name"]: entry for entry in json.loads(listed.stdout)}
    assert providers["airflow-imagebuilder"]["version"] == airflow_imagebuilder.__version__
    shown = subprocess.run(
        [str(venv / "bin/airflow"), "providers", "get", "airflow-imagebuilder", "--full", "-o", "json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(shown.stdout)[0]["documentation-url"] == get_provider_info()["documentation-url"]
    located = subprocess.run(
        [str(venv / "bin/python"), "-c", "import airflow_imagebuilder; print(airflow_imagebuilder.__file__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert located.stdout.startswith(str(venv)), located.stdout  # the wheel's copy, not this checkout
