"""Test helper: every raw response a client receives is checked against botocore's output shape."""

from __future__ import annotations

import json
from typing import Any

from airflow_imagebuilder.testing.shapes import check_shape, operation_shapes


class ResponseShapeRecorder:
    """Registers on a boto3 client; records each successful operation and every shape violation."""

    def __init__(self, client: Any) -> None:
        self.checked: list[str] = []
        self.violations: list[str] = []
        client.meta.events.register("after-call.imagebuilder", self._after_call)

    def _after_call(self, http_response: Any, model: Any, **_: Any) -> None:
        if http_response.status_code != 200:
            return
        body = json.loads(http_response.content or b"{}")
        self.checked.append(model.name)
        self.violations += check_shape(body, operation_shapes(model.name)[1])
