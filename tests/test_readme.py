"""Every Python block and shell command of README.md and of the docs runs, extracted from the documents themselves;
every JSON and YAML block parses.

Python blocks whose first line is a path comment (``# tests/test_my_build.py``) are written to that path in a
scratch directory; every other Python block runs as a script there.  Shell commands (fenced ``shell`` blocks,
indented blocks that start with a command, inline code that is a command) run with bash in the same directory,
after the files are written, so the README's own install-and-run instructions are what runs.  Each document runs in
a scratch directory of its own.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").rglob("*.md"))]
COMMAND = re.compile(r"^(?:[A-Z][A-Z0-9_]*=\S*\s+)*(?:pip|make|python|aws|docker|airflow|export)\b|^[A-Z][A-Z0-9_]*=")
INLINE_COMMAND = re.compile(r"^(?:[A-Z][A-Z0-9_]*=(?:\"[^\"]*\"|\S*)\s+)*(?:pip|make|python|aws|docker|airflow)\s")
PATH_COMMENT = re.compile(r"^# (?P<path>[\w./-]+\.py)\n")
ROOT = README.parent
#: The README's test of a user's own DAG, and the files it needs.
OWN_DAG_FILES = ("tests/conftest.py", "dags/golden_image.py", "tests/test_golden_image.py")

#: Shell commands the suite does not run, each with the reason. Every other command of the documents runs.
NOT_RUN = {
    "pip install": "installs into the environment; the test environment already holds the package and its extras",
    "make demo": "scripts/demo.py end to end (Airflow + moto, about a minute); the same DAG runs in test_real_engine",
    "make test-latest": "resolves the newest versions into a third virtualenv and runs the unit suite there",
    "make test": "the unit suite, this test included",
    "make test-all": "the whole suite, this test included",
    "make test-oldest": "builds a second virtualenv with the oldest supported Airflow",
    "make lock": "rewrites locks/ from the package registry; make lint checks that the locks match pyproject.toml",
    "make lint": "the first step of make test",
    "make docs": "builds into the checkout's build/site; test_the_docs_site_builds builds the same site",
    "python -m pytest -q tests/test_golden_image.py": "test_the_readme_test_of_an_own_dag_passes_in_seconds_against_"
    "the_installed_wheel (slow) runs it from the wheel, non-editable; tests/test_dag_testing.py runs such DAGs",
    "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE=True python -m pytest -q tests/test_golden_image.py": "the same, "
    "deferrable",
    "make dist": "builds into the checkout's dist/; tests/test_packaging.py builds, checks and installs the release",
    "make bench": "benchmarks take minutes and print ratios, they assert nothing",
    "docker compose up": "needs docker; tests/test_docker_compose.py checks the compose file",
    "airflow-imagebuilder-events check": "needs a queue wired to EventBridge; tests/test_event_driven.py "
    "runs the check against moto",
}


def files(document: Path = README) -> dict[str, str]:
    """The document's Python blocks that are files, by path."""
    return {PATH_COMMENT.match(body)["path"]: body for kind, body in blocks(document) if kind == "file"}  # type: ignore[index]


def blocks(document: Path = README) -> list[tuple[str, str]]:
    """(kind, text) of every code block and inline command, in document order: kind is python, shell, file, json or
    yaml."""
    text = document.read_text()
    found: list[tuple[int, str, str]] = []
    fenced = list(re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S))
    for match in fenced:
        language, body = match[1], match[2]
        if language == "python":
            found.append((match.start(), "file" if PATH_COMMENT.match(body) else "python", body))
        elif language in ("shell", "bash", "console", "sh"):
            found.append((match.start(), "shell", body))
        elif language in ("json", "yaml"):
            found.append((match.start(), language, body))
    outside = text
    for match in fenced:
        outside = outside[: match.start()] + " " * (match.end() - match.start()) + outside[match.end() :]
    for match in re.finditer(r"(?:^\n)((?:^(?: {4}.*)?\n)+)", outside, re.M):
        body = "\n".join(line[4:] for line in match[1].splitlines())
        if COMMAND.match(body.strip()):
            found.append((match.start(1), "shell", body))
    for match in re.finditer(r"(?<!`)`([^`\n]+)`(?!`)", outside):
        if INLINE_COMMAND.match(match[1]):
            found.append((match.start(), "shell", match[1]))
    return [(kind, body) for _, kind, body in sorted(found)]


def runnable(script: str) -> str:
    """The script without its allow-listed lines (replaced by a comment naming the reason)."""
    lines = []
    for line in script.splitlines():
        skipped = next((reason for command, reason in NOT_RUN.items() if line.strip().startswith(command)), None)
        lines.append(f"# not run: {line.strip()} ({skipped})" if skipped else line)
    return "\n".join(lines)


def write_files(folder: Path, contents: dict[str, str]) -> None:
    for name, body in contents.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(body)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_readme_has_the_examples_this_test_expects():
    assert set(files()) == set(OWN_DAG_FILES)
    commands = "\n".join(body for kind, body in blocks() if kind == "shell")
    assert 'pip install ".[testing]"' in commands and "python -m pytest -q tests/test_golden_image.py" in commands
    testing = ROOT / "docs/guides/testing.md"
    assert "tests/test_my_build.py" in files(testing)
    everywhere = "\n".join(body for document in DOCUMENTS for kind, body in blocks(document) if kind == "shell")
    for command in NOT_RUN:
        assert command in everywhere, f"NOT_RUN lists {command!r}, which no document has any more"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_json_and_yaml_block_parses(document):
    for kind, body in blocks(document):
        if kind == "json":
            json.loads(body)
        elif kind == "yaml":
            yaml.safe_load(body)


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_python_block_and_shell_command_runs(tmp_path, document):
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PORT": str(free_port()),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),  # this checkout, however it is installed
    }
    found = [(kind, body) for kind, body in blocks(document) if kind in ("file", "python", "shell")]
    write_files(tmp_path, files(document))
    ran = []
    for index, (kind, body) in enumerate(found):
        if kind == "file":
            continue
        if kind == "python":
            script = tmp_path / f"readme_block_{index}.py"
            script.write_text(body)
            command = [sys.executable, str(script)]
        else:
            command = ["bash", "-e", "-o", "pipefail", "-c", runnable(body)]
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (
            f"{document.name} block failed:\n{body}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        )
        ran.append(body)
    assert ran or not found, f"{document.name}: no block ran"


@pytest.mark.parametrize("command", sorted(NOT_RUN))
def test_every_command_not_run_has_a_reason(command):
    assert NOT_RUN[command]


@pytest.mark.slow  # mkdocs is in the docs extra, which the oldest-Airflow virtualenv does not install
def test_the_docs_site_builds(tmp_path):
    """``make docs``: the guides and the API reference from the public classes' docstrings, warnings as errors."""
    mkdocs = str(Path(sys.executable).with_name("mkdocs"))
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "site/reference/operators/index.html").read_text().count("ImageBuilderCreateImageOperator") > 1


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A virtualenv with this project installed from its wheel, not editable, with the ``testing`` extra.

    The dependencies are this environment's, offered to the new one as a site directory (without this project
    itself), so the install needs no package index.
    """
    folder = tmp_path_factory.mktemp("installed")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", folder, ROOT],
        check=True,
        cwd=folder,
    )
    [wheel] = folder.glob("airflow_imagebuilder-*.whl")
    dependencies = folder / "dependencies"
    dependencies.mkdir()
    site_packages = Path(sysconfig.get_paths()["purelib"])
    for entry in site_packages.iterdir():
        if not re.match(r"(__editable__\.)?airflow_imagebuilder\b", entry.name):
            (dependencies / entry.name).symlink_to(entry)
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "dependencies.pth").write_text(f"import site; site.addsitedir({str(dependencies)!r})\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-index", f"{wheel}[testing]"],
        check=True,
    )
    return python


@pytest.mark.slow  # builds and installs a wheel
@pytest.mark.parametrize("deferrable", ["False", "True"])
def test_the_readme_test_of_an_own_dag_passes_in_seconds_against_the_installed_wheel(installed, tmp_path, deferrable):
    write_files(tmp_path, {name: files()[name] for name in OWN_DAG_FILES})
    fresh = ("AIRFLOW", "AWS_", "PYTHONPATH")
    env = {key: value for key, value in os.environ.items() if not key.startswith(fresh)}
    env["AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"] = deferrable
    done = subprocess.run(
        [installed, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=0", "tests/test_golden_image.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"--- stdout\n{done.stdout[-5000:]}\n--- stderr\n{done.stderr[-3000:]}"
    where = subprocess.run(
        [installed, "-c", "import airflow_imagebuilder; print(airflow_imagebuilder.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(installed.parent.parent) in where, f"not the installed wheel: {where}"
    # How long the user's test took is printed (pytest -s shows it), never asserted: this machine is shared.
    print(f"README own-DAG test, deferrable={deferrable}:", re.findall(r"\d+ passed in [\d.]+s", done.stdout))
