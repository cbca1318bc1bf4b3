"""Image states and the defaults of a wait: what operator and sensor signatures need, without the wait itself.

The wait step that uses them is :func:`~airflow_imagebuilder.waiting.next_step`; this module stays free of it so
that DAG parsing (which only builds operators) does not load the wait machinery.
"""

from __future__ import annotations

#: Statuses of a build that is still running.
IN_PROGRESS_STATES = frozenset({"PENDING", "CREATING", "BUILDING", "TESTING", "DISTRIBUTING", "INTEGRATING"})
#: The one status that means the image is ready.
SUCCESS_STATES = frozenset({"AVAILABLE"})
#: Statuses from which the image will never become AVAILABLE.
FAILURE_STATES = frozenset({"FAILED", "CANCELLED", "DEPRECATED", "DELETED", "DISABLED"})

#: Seconds during which "not found" is taken for the service's eventual consistency after CreateImage.
DEFAULT_NOT_FOUND_GRACE = 120.0
#: Seconds between two safety GetImage calls of an event-driven wait (in case an event is lost).
DEFAULT_SAFETY_POLL_INTERVAL = 600.0
