"""``make demo``: the golden-AMI chain DAG end to end against the local emulator and moto, no AWS account.

Starts the Image Builder emulator (strict mode) and moto server on loopback, creates the recipe, infrastructure
and distribution configurations the DAG names with the same boto3 calls infrastructure code makes, runs
``airflow dags test imagebuilder_golden_ami`` in a throwaway Airflow home, prints what happened and stops
everything it started.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from airflow_imagebuilder.testing import EmulatorControl
from airflow_imagebuilder.testing.examples import seed_example_resources
from airflow_imagebuilder.testing.processes import aws_connection_uri, emulator_process, local_client, moto_process

ROOT = Path(__file__).resolve().parent.parent
PARAMETER = "/golden-ami/golden-base/latest"
TRANSITION = re.compile(r"Image arn:\S+ is [A-Z]+ \(\d+s elapsed\)")


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="imagebuilder-demo-"))
    started = time.monotonic()
    try:
        with (
            emulator_process(phase_seconds=2.0, log_dir=home, strict=True) as emulator,
            moto_process(log_dir=home) as moto,
        ):
            seed_example_resources(local_client("imagebuilder", emulator.endpoint_url))
            env = {
                **os.environ,
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW_CONN_AWS_DEFAULT": aws_connection_uri(emulator.endpoint_url, moto.endpoint_url),
            }
            airflow = str(Path(sys.executable).with_name("airflow"))
            print(f"Emulator at {emulator.endpoint_url}, moto at {moto.endpoint_url}; Airflow home {home}")
            subprocess.run([airflow, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
            log = home / "dags-test.log"
            with log.open("w") as output:
                result = subprocess.run(
                    [airflow, "dags", "test", "imagebuilder_golden_ami"],
                    env=env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            if result.returncode != 0:
                print(log.read_text()[-4000:])
                print(f"airflow dags test failed with exit code {result.returncode}; full log: {log}")
                return 1
            images = EmulatorControl(emulator.endpoint_url).images()
            ssm = local_client("ssm", moto.endpoint_url)
            ami = ssm.get_parameter(Name=PARAMETER)["Parameter"]["Value"]
            ib = local_client("imagebuilder", emulator.endpoint_url)
            [arn] = images
            outputs = ib.get_image(imageBuildVersionArn=arn)["image"]["outputResources"]["amis"]
            print()
            for line in log.read_text().splitlines():
                if TRANSITION.search(line):
                    print("  " + TRANSITION.search(line).group(0))
            print()
            print("Golden AMI chain finished")
            print(f"  image build version : {arn} ({images[arn]})")
            for output in outputs:
                print(f"  AMI                 : {output['image']} in {output['region']}")
            print(f"  SSM {PARAMETER} = {ami}")
            print(f"  elapsed             : {time.monotonic() - started:.1f}s")
            night = run_nightly_pipeline(airflow, env, home)
            if night is None:
                return 1
            print(json.dumps({"image_build_version_arn": arn, "ssm_value": ami, "nightly_image": night}))
            return 0
    finally:
        shutil.rmtree(home, ignore_errors=True)


def run_nightly_pipeline(airflow: str, env: dict[str, str], home: Path) -> str | None:
    """One night of the pipeline DAG: StartImagePipelineExecution, a deferred wait, the AMI id published."""
    log = home / "nightly.log"
    with log.open("w") as output:
        result = subprocess.run(
            [airflow, "dags", "test", "imagebuilder_pipeline_nightly", "2026-11-27"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    text = log.read_text()
    found = re.search(r"Image (arn:\S+/golden-base/\S+) is AVAILABLE: AMIs", text)
    if result.returncode != 0 or found is None:
        print(text[-4000:])
        print(f"the nightly pipeline DAG failed (exit code {result.returncode}); full log: {log}")
        return None
    print(f"Nightly pipeline run finished: {found.group(1)}")
    return found.group(1)


if __name__ == "__main__":
    sys.exit(main())
