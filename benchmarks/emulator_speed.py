"""GetImage calls per second through boto3 against the emulator (a separate process) holding 1,000 images."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

IMAGES = 1000
CALLS = 3000


def measure() -> dict[str, float]:
    from airflow_imagebuilder.testing.processes import emulator_process, local_client

    with tempfile.TemporaryDirectory() as work, emulator_process(phase_seconds=60, log_dir=Path(work)) as emulator:
        client = local_client("imagebuilder", emulator.endpoint_url)
        arns = [
            client.create_image(
                imageRecipeArn="arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/speed/1.0.0",
                infrastructureConfigurationArn="arn:aws:imagebuilder:us-east-1:123456789012:infrastructure-configuration/speed-infra",
                clientToken=f"speed-{index}",
            )["imageBuildVersionArn"]
            for index in range(IMAGES)
        ]
        for arn in arns[:50]:  # warm the connection pool and botocore's caches
            client.get_image(imageBuildVersionArn=arn)
        started = time.perf_counter()
        for index in range(CALLS):
            client.get_image(imageBuildVersionArn=arns[index % IMAGES])
        elapsed = time.perf_counter() - started
    return {"images": IMAGES, "calls": CALLS, "get_per_s": CALLS / elapsed}


def report(results: dict[str, float]) -> list[str]:
    return [
        f"Emulator: {results['get_per_s']:.0f} GetImage/s through boto3 with {results['images']:.0f} live images "
        f"({results['calls']:.0f} sequential calls, one client)"
    ]


if __name__ == "__main__":
    measured = measure()
    print("\n".join(report(measured)))
    print("EMULATOR " + json.dumps(measured))
