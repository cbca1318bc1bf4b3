"""Image states, the names of Image Builder's state change events, and the defaults of a wait.

The wait step that uses them is :func:`~airflow_imagebuilder._decisions.waiting.next_step`; the emulator takes
them from here too, so it cannot drift from what the provider expects.
"""

from __future__ import annotations

#: Statuses of a build that is still running.
IN_PROGRESS_STATES = frozenset({"PENDING", "CREATING", "BUILDING", "TESTING", "DISTRIBUTING", "INTEGRATING"})
#: The one status that means the image is ready.
SUCCESS_STATES = frozenset({"AVAILABLE"})
#: Statuses from which the image will never become AVAILABLE.
FAILURE_STATES = frozenset({"FAILED", "CANCELLED", "DEPRECATED", "DELETED", "DISABLED"})

#: Source and detail-type of the event Image Builder sends to EventBridge on every status change of a build.
EVENT_SOURCE = "aws.imagebuilder"
DETAIL_TYPE = "EC2 Image Builder Image State Change"

#: Seconds during which "not found" is taken for the service's eventual consistency after CreateImage.
DEFAULT_NOT_FOUND_GRACE = 120.0
#: Seconds between two safety GetImage calls of an event-driven wait (in case an event is lost).
DEFAULT_SAFETY_POLL_INTERVAL = 600.0
