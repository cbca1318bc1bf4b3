"""Deliver Image Builder's state change events to SQS queues in moto, as infrastructure code does on AWS.

docker-compose runs this once moto is healthy (service ``imagebuilder-events-init``): for each ``--queue`` it
creates the queue, an EventBridge rule on the default bus matching Image Builder's state change events, the
queue policy letting that rule send, and the rule's target, then prints the queue URL.  The emulator sends its
events to moto's EventBridge (``--events-endpoint-url``), so every build's status changes reach each queue.
Running it again changes nothing.
"""

from __future__ import annotations

import argparse
import sys

from airflow_imagebuilder.testing.events import END_STATUSES, wire_events_to_queue
from airflow_imagebuilder.testing.processes import local_client


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint-url", required=True, help="moto server, e.g. http://moto:5000")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--queue", action="append", required=True, help="queue name (repeatable)")
    args = parser.parse_args(argv)
    events = local_client("events", args.endpoint_url, args.region)
    sqs = local_client("sqs", args.endpoint_url, args.region)
    for name in args.queue:
        print(wire_events_to_queue(events, sqs, name, statuses=END_STATUSES))  # waits act on build ends only
    return 0


if __name__ == "__main__":
    sys.exit(main())
