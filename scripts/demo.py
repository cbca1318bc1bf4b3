"""``make demo``: the example DAGs end to end against the local emulator and moto, no AWS account.

Starts moto server and the Image Builder emulator (strict mode) on loopback, with the emulator sending Image
Builder's state change events to moto's EventBridge, where a rule delivers them to an SQS queue (the set-up the
README describes for AWS).  It creates the recipe, infrastructure and distribution configurations and the pipeline
the DAGs name with the same boto3 calls infrastructure code makes, then, in a throwaway Airflow home, runs
``airflow dags test imagebuilder_golden_ami`` (its sensor polls GetImage every 10 s in the triggerer) and one night
of ``imagebuilder_pipeline_nightly``, whose deferred wait is event-driven: the Airflow Variable
``imagebuilder_events_queue_url`` names the queue.  It prints what happened, including how long each wait took to
notice that its build was AVAILABLE, and stops everything it started.

Detection latency is measured on the emulator's own clock (monotonic, sub-millisecond): from the moment the
build's last phase ends (it is AVAILABLE from then on) to the moment the emulator received the first GetImage of
that build after it, which is the call that saw AVAILABLE: for the event-driven wait, the one that confirms the
event, right before the trigger fires.  It leaves out the few milliseconds between that answer and the trigger
firing.
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
from airflow_imagebuilder.testing.events import END_STATUSES, wire_events_to_queue
from airflow_imagebuilder.testing.examples import seed_example_resources
from airflow_imagebuilder.testing.processes import aws_connection_uri, emulator_process, local_client, moto_process

ROOT = Path(__file__).resolve().parent.parent
PARAMETER = "/golden-ami/golden-base/latest"
TRANSITION = re.compile(r"Image arn:\S+ is [A-Z]+ \(\d+s elapsed\)")
#: Seconds each lifecycle phase of a build lasts in the emulator: fixed, so the moment a build became AVAILABLE
#: follows from the moment it started and the phases it walked.
PHASE_SECONDS = {
    "PENDING": 1.0,
    "CREATING": 1.0,
    "BUILDING": 2.0,
    "TESTING": 2.0,
    "DISTRIBUTING": 2.0,
    "INTEGRATING": 2.0,
}
EVENTS_QUEUE = "imagebuilder-events"
CREATE_OPERATIONS = ("CreateImage", "StartImagePipelineExecution")


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="imagebuilder-demo-"))
    code = 1
    try:
        code = run_demo(home)
    finally:
        if code == 0:
            shutil.rmtree(home, ignore_errors=True)
        else:
            print(f"Kept {home} for its logs (Airflow, the emulator and moto)")
    return code


def run_demo(home: Path) -> int:
    """Everything ``make demo`` shows; Airflow's, the emulator's and moto's files go to ``home``."""
    started = time.monotonic()
    with (
        moto_process(log_dir=home) as moto,
        emulator_process(
            phase_seconds=PHASE_SECONDS, log_dir=home, strict=True, events_endpoint_url=moto.endpoint_url
        ) as emulator,
    ):
        seed_example_resources(local_client("imagebuilder", emulator.endpoint_url))
        queue_url = wire_events_to_queue(
            local_client("events", moto.endpoint_url),
            local_client("sqs", moto.endpoint_url),
            EVENTS_QUEUE,
            statuses=END_STATUSES,  # a wait acts only on the end of a build
        )
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_CONN_AWS_DEFAULT": aws_connection_uri(emulator.endpoint_url, moto.endpoint_url),
            "AIRFLOW_VAR_IMAGEBUILDER_EVENTS_QUEUE_URL": queue_url,
        }
        airflow = str(Path(sys.executable).with_name("airflow"))
        print(f"Emulator at {emulator.endpoint_url}, moto at {moto.endpoint_url}; Airflow home {home}")
        print(f"State change events: emulator -> moto EventBridge -> SQS {queue_url}")
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
        control = EmulatorControl(emulator.endpoint_url)
        polled = detection(control, arn)
        event_driven = detection(control, night)
        print()
        print("Detection latency: build AVAILABLE -> the GetImage that saw it (emulator clock, <1 ms precision)")
        print(
            f"  polling every 10 s (golden AMI sensor) : {polled['latency_s']:6.3f}s "
            f"(anywhere from 0 to 10 s), {polled['get_image_calls']} GetImage calls for the build"
        )
        print(
            f"  event-driven via SQS (nightly pipeline): {event_driven['latency_s']:6.3f}s, "
            f"{event_driven['get_image_calls']} GetImage calls for the build, "
            f"{event_driven['events_sent']} state change events sent"
        )
        print(f"  elapsed                                : {time.monotonic() - started:.1f}s")
        summary = {
            "image_build_version_arn": arn,
            "ssm_value": ami,
            "nightly_image": night,
            "polling_detection_latency_s": polled["latency_s"],
            "event_detection_latency_s": event_driven["latency_s"],
            "event_get_image_calls": event_driven["get_image_calls"],
        }
        print(json.dumps(summary))
        return 0


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
    print()
    print("Nightly pipeline run, its deferred wait event-driven (Variable imagebuilder_events_queue_url)")
    for line in text.splitlines():
        if TRANSITION.search(line):
            print("  " + TRANSITION.search(line).group(0))
    print(f"  image build version : {found.group(1)}")
    return found.group(1)


def detection(control: EmulatorControl, arn: str) -> dict[str, float | int]:
    """How long the wait for ``arn`` took to see it AVAILABLE, and the GetImage calls and events of the build.

    The build started when the emulator answered its CreateImage (or StartImagePipelineExecution), and became
    AVAILABLE once the phases it walked (the ``previous_status`` of each state change in the event journal) had
    lasted their ``PHASE_SECONDS``; the call journal's times are on that same clock.
    """
    calls = [entry for entry in control.journal() if entry["image_arn"] == arn]
    started = next(entry["time"] for entry in calls if entry["operation"] in CREATE_OPERATIONS)
    events = control.event_journal(arn)
    walked: list[str] = []
    for event in events:
        walked.append(event["previous_status"])
        if event["status"] == "AVAILABLE":
            break
    available_at = started + sum(PHASE_SECONDS[phase] for phase in walked)
    get_image = [entry["time"] for entry in calls if entry["operation"] == "GetImage"]
    seen_at = min(moment for moment in get_image if moment >= available_at)
    return {
        "latency_s": round(seen_at - available_at, 3),
        "get_image_calls": len(get_image),
        "events_sent": sum(event["outcome"] == "sent" for event in events),
    }


if __name__ == "__main__":
    sys.exit(main())
