"""Airflow's UI in a real browser: headless Chromium from Debian's ``chromium`` package, no browser download.

Airflow 3's UI is a React single-page app that renders from the REST API.  Chromium's virtual time budget lets
the page run (virtual time stands still while a request is pending) before it writes the rendered DOM and,
optionally, a screenshot: one process per page, no DevTools client.  Used by ``scripts/screenshots.py`` and
``tests/test_ui_extra_links.py``.
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

#: The browser window: the screenshots' size.
WINDOW = (1280, 800)
#: Milliseconds of virtual time the page gets to fetch and render before the DOM is read.
RENDER_BUDGET_MS = 15_000


def run_page(base_url: str, dag_id: str, run_id: str) -> str:
    """The UI's page of a DAG run: its grid beside the run's task instances."""
    return f"{base_url}/dags/{dag_id}/runs/{quote(run_id, safe=':+')}"  # as the UI's own links write it


def task_details_page(base_url: str, dag_id: str, run_id: str, task_id: str) -> str:
    """The Details tab of a task instance, where the UI shows the task's extra links."""
    return f"{run_page(base_url, dag_id, run_id)}/tasks/{task_id}/details"


def chromium() -> str:
    """The Chromium executable; fails, saying what to install, when there is none."""
    path = shutil.which("chromium")
    if path is None:
        raise RuntimeError("Chromium is not installed: apt-get install chromium (Debian's package)")
    return path


def open_page(url: str, screenshot: Path | None = None) -> str:
    """The DOM of ``url`` once rendered; also a PNG of the window at ``screenshot`` when given."""
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",  # root (CI) cannot use Chromium's sandbox
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--virtual-time-budget={RENDER_BUDGET_MS}",
        "--dump-dom",
    ]
    if screenshot is not None:
        command.append(f"--screenshot={screenshot}")
    result = subprocess.run([*command, url], capture_output=True, text=True, timeout=120)
    if result.returncode != 0 or not result.stdout.strip():
        raise RuntimeError(f"Chromium failed on {url} (exit {result.returncode}):\n{result.stderr[-3000:]}")
    if screenshot is not None and not screenshot.is_file():
        raise RuntimeError(f"Chromium wrote no screenshot of {url}:\n{result.stderr[-3000:]}")
    return result.stdout


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href, self._text = dict(attrs).get("href") or "", []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.anchors.append(("".join(self._text).strip(), self._href))
            self._href = None


def anchors(dom: str) -> list[tuple[str, str]]:
    """Every link of the page as ``(text, href)``, in document order."""
    parser = _Anchors()
    parser.feed(dom)
    return parser.anchors


def extra_links(
    base_url: str, dag_id: str, run_id: str, task_id: str, screenshot: Path | None = None
) -> dict[str, str]:
    """The links of the task instance's Details tab as rendered, ``{text: href}``; only those leaving Airflow.

    The extra links are rendered as buttons named after each link, whose ``href`` is the link's URL.
    """
    dom = open_page(task_details_page(base_url, dag_id, run_id, task_id), screenshot)
    return {text: href for text, href in anchors(dom) if href.startswith(("https://", "http://"))}
