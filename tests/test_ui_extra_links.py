"""The Image Builder extra links as Airflow's UI renders them, seen in a real browser (headless Chromium).

tests/test_links.py checks the URLs each link formats; this checks that a user finds them on the task's page: a
real api-server, scheduler and triggerer run the golden-AMI chain against the emulator, and Chromium opens the
Details tab of ``wait_for_image``, the sensor that follows the build (the same code as scripts/screenshots.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_imagebuilder.links import ImageBuilderAmiLink, ImageBuilderImageLink, ImageBuilderLogsLink
from airflow_imagebuilder.testing.processes import local_client
from tests.browser import chromium, extra_links
from tests.engine import UNHURRIED_PHASE_SECONDS, example_deployment, run_golden_ami_chain

pytestmark = pytest.mark.slow
DAG_ID = "imagebuilder_golden_ami"
TASK_ID = "wait_for_image"


def test_the_task_page_shows_the_console_logs_and_ami_links(tmp_path: Path):
    chromium()  # without a browser, fail now (saying what to install), not after starting Airflow
    with example_deployment(tmp_path, phase_seconds=UNHURRIED_PHASE_SECONDS) as deployment:
        engine = deployment.engine
        run_id = run_golden_ami_chain(engine)
        xcoms = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{TASK_ID}/xcomEntries"
        arn = engine.api("GET", f"{xcoms}/return_value")["value"]
        image = local_client("imagebuilder", deployment.emulator.endpoint_url).get_image(imageBuildVersionArn=arn)
        first_ami = image["image"]["outputResources"]["amis"][0]
        links = extra_links(engine.url, DAG_ID, run_id, TASK_ID, screenshot=tmp_path / "extra-links.png")

    # arn:aws:imagebuilder:us-east-1:123456789012:image/golden-base/1.0.0/<build>
    region = arn.split(":")[3]
    name, version, build = arn.split("/")[1:]
    assert arn.startswith("arn:aws:imagebuilder:") and name == "golden-base"
    expected = {
        ImageBuilderImageLink.name: (
            f"https://console.aws.amazon.com/imagebuilder/home?region={region}"
            f"#/images/{arn.replace('/', '%2F')}/details"
        ),
        ImageBuilderLogsLink.name: (
            f"https://console.aws.amazon.com/cloudwatch/home?region={region}#logsV2:log-groups/log-group/"
            f"$252Faws$252Fimagebuilder$252F{name}/log-events/{version}$252F{build}"
        ),
        ImageBuilderAmiLink.name: (
            f"https://console.aws.amazon.com/ec2/home?region={first_ami['region']}"
            f"#ImageDetails:imageId={first_ami['image']}"
        ),
    }
    assert {link: links.get(link) for link in expected} == expected, f"links rendered on the page: {links}"
