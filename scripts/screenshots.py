"""Screenshots of Airflow's UI for the docs, from a real browser: ``docs/images/*.png``.

Starts the emulator (with the example DAGs' resources), moto, and a real api-server, scheduler, dag-processor and
triggerer (tests/engine.py), runs the golden-AMI chain to success, then photographs two pages with headless
Chromium (Debian's ``chromium`` package, see tests/browser.py): the DAG run's grid, and the Details tab of the
``wait_for_image`` sensor with its Image Builder extra links.  Each page is checked to show what its picture is
for before the picture is kept.  Run from the checkout: ``.venv/bin/python scripts/screenshots.py``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests/ holds the engine and the browser, shared with the tests

from airflow_imagebuilder.links import ImageBuilderAmiLink, ImageBuilderImageLink, ImageBuilderLogsLink  # noqa: E402
from tests.browser import anchors, chromium, extra_links, open_page, run_page  # noqa: E402
from tests.engine import UNHURRIED_PHASE_SECONDS, example_deployment, run_golden_ami_chain  # noqa: E402

IMAGES = ROOT / "docs" / "images"
DAG_ID = "imagebuilder_golden_ami"
TASKS = ("create_image", "wait_for_image", "publish_ami")
LINK_NAMES = (ImageBuilderImageLink.name, ImageBuilderLogsLink.name, ImageBuilderAmiLink.name)
GRID_PICTURE = "golden-ami-run-grid.png"
LINKS_PICTURE = "wait-for-image-extra-links.png"


def take_screenshots(home: Path) -> None:
    """Run the chain in a deployment under ``home`` and write both pictures into ``home``."""
    with example_deployment(home, phase_seconds=UNHURRIED_PHASE_SECONDS) as deployment:
        engine = deployment.engine
        run_id = run_golden_ami_chain(engine)

        dom = open_page(run_page(engine.url, DAG_ID, run_id), home / GRID_PICTURE)
        hrefs = {href for _, href in anchors(dom)}
        missing = [task for task in TASKS if f"/dags/{DAG_ID}/runs/{run_id}/tasks/{task}" not in hrefs]
        if missing:
            raise RuntimeError(f"The run's page shows no grid cell for {missing}: see {home / GRID_PICTURE}")

        links = extra_links(engine.url, DAG_ID, run_id, "wait_for_image", home / LINKS_PICTURE)
        if not set(LINK_NAMES) <= set(links):
            raise RuntimeError(f"The task's page shows the links {links}, not {LINK_NAMES}: see {home / LINKS_PICTURE}")


def main() -> int:
    chromium()  # says what to install before anything starts
    home = Path(tempfile.mkdtemp(prefix="imagebuilder-screenshots-"))
    try:
        take_screenshots(home)
    except BaseException:
        print(f"Screenshots failed; the Airflow home with the process logs is kept: {home}", file=sys.stderr)
        raise
    IMAGES.mkdir(parents=True, exist_ok=True)
    for picture in (GRID_PICTURE, LINKS_PICTURE):
        shutil.copyfile(home / picture, IMAGES / picture)
        print(f"{IMAGES / picture}: {(IMAGES / picture).stat().st_size} bytes")
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
