"""Run event-driven waits for the ARNs given on the command line, in a process of its own (a "triggerer").

Prints one JSON line: the outcome per ARN and the ARNs whose messages this process's consumer deleted.
"""

from __future__ import annotations

import asyncio
import json
import sys

from airflow_imagebuilder._adapters.sqs import CONSUMERS
from airflow_imagebuilder.triggers import ImageBuilderImageTrigger


async def wait_all(queue_url: str, arns: list[str]) -> dict:
    async def one(arn: str) -> str:
        trigger = ImageBuilderImageTrigger(
            image_build_version_arn=arn,
            waiter_delay=0.5,
            waiter_max_attempts=600,
            aws_conn_id="aws_default",
            completion_queue_url=queue_url,
            safety_poll_interval=120,
        )
        async for event in trigger.run():
            return str(event.payload["status"])
        return "none"

    consumer = CONSUMERS.get(queue_url, "aws_default", None, None, None)
    outcomes = await asyncio.gather(*(one(arn) for arn in arns))
    return {
        "outcomes": dict(zip(arns, outcomes, strict=True)),
        "deleted": list(consumer.deleted_arns),
        "counts": consumer.counts,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(wait_all(sys.argv[1], sys.argv[2:]))))
