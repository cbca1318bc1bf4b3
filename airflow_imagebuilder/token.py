"""Derived client tokens: deterministic, per task instance and request content, with a generation counter.

The token for generation ``g`` is a UUID (36 characters) computed from the task instance identity
(dag_id, task_id, run_id, map_index), the rendered request without its token, and ``g``.  The operator
re-sends generation 0, 1, 2, ... and inspects the image each one names (CreateImage is idempotent per token):
an in-progress image is followed, an AVAILABLE one is reused, and a failed one moves on to the next generation.
No state is kept anywhere but in the service, so this works on every Airflow version and across worker crashes.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

TOKEN_SCHEME_VERSION = 1


def derive_client_token(identity: Mapping[str, Any], request: Mapping[str, Any], generation: int) -> str:
    """Return the client token of ``generation`` for this task instance and request content.

    ``request`` is the CreateImage request in API form; its ``clientToken`` (if any) is ignored.
    """
    material = json.dumps(
        {
            "scheme": TOKEN_SCHEME_VERSION,
            "identity": {key: identity[key] for key in ("dag_id", "task_id", "run_id", "map_index")},
            "request": {key: value for key, value in request.items() if key != "clientToken"},
            "generation": generation,
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return str(uuid.UUID(bytes=hashlib.sha256(material.encode()).digest()[:16], version=5))
