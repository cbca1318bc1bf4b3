"""Derived client tokens: deterministic, per task instance and request content, with a generation counter.

The token for generation ``g`` is a UUID (36 characters) computed from the task instance identity
(dag_id, task_id, run_id, map_index), the rendered request without its token, and ``g``.  The operator
re-sends generation 0, 1, 2, ... and inspects the image each one names (CreateImage is idempotent per token):
an in-progress image is followed, an AVAILABLE one is reused, and a failed one moves on to the next generation.
No state is kept anywhere but in the service, so this works on every Airflow version and across worker crashes.

Two optional inputs enter the token only when set, so tokens without them stay what they always were:

* ``namespace`` (``[imagebuilder] client_token_namespace``): deployments that share an AWS account and DAG ids
  (staging and production) set different namespaces and never follow or reuse each other's builds; a deployment
  moved blue/green keeps its namespace and keeps reusing.
* ``series`` (``force_rebuild=True``): the first try number of the task instance's current series of tries.  A
  clear starts a new series, so a rerun builds anew; a retry stays in its series, so it follows or reuses the
  build its own earlier try started instead of starting another.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

TOKEN_SCHEME_VERSION = 1


def derive_client_token(
    identity: Mapping[str, Any],
    request: Mapping[str, Any],
    generation: int,
    *,
    namespace: str = "",
    series: int | None = None,
) -> str:
    """Return the client token of ``generation`` for this task instance and request content.

    ``request`` is the request in API form; its ``clientToken`` (if any) is ignored.
    """
    content: dict[str, Any] = {
        "scheme": TOKEN_SCHEME_VERSION,
        "identity": {key: identity[key] for key in ("dag_id", "task_id", "run_id", "map_index")},
        "request": {key: value for key, value in request.items() if key != "clientToken"},
        "generation": generation,
    }
    if namespace:
        content["namespace"] = namespace
    if series is not None:
        content["series"] = series
    material = json.dumps(
        content,
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return str(uuid.UUID(bytes=hashlib.sha256(material.encode()).digest()[:16], version=5))
