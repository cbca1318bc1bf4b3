"""Modules loaded on first use, so that DAG parsing loads only what building operators needs.

A DAG processor imports the operator and hook modules but never runs a task: the retry policy, the wait step, the
shared async clients, the pydantic request models, the diagnostics and the exceptions are execution machinery, and
most of the provider's import time.  The hook, operator and sensor modules import them from here (the real
modules for type checkers)::

    if TYPE_CHECKING:
        from airflow_imagebuilder import retry, waiting
    else:  # execution machinery, loaded on first use
        from airflow_imagebuilder.lazy import retry, waiting

and use them qualified (``waiting.next_step(...)``).  ``tests/test_packaging.py`` checks that parsing a DAG
leaves these modules unloaded.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for the module ``name`` and imports it when an attribute is first read.

    The import goes through :func:`importlib.import_module`, so it holds the import lock: two threads reading the
    first attribute at once get one fully executed module (unlike ``importlib.util.LazyLoader`` before Python
    3.12).
    """

    __slots__ = ("_module", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}{'' if self._module is None else ' (loaded)'}>"


async_clients = LazyModule("airflow_imagebuilder.async_clients")
client_tokens = LazyModule("airflow_imagebuilder.token")
diagnostics = LazyModule("airflow_imagebuilder.diagnostics")
exceptions = LazyModule("airflow_imagebuilder.exceptions")
lineage = LazyModule("airflow_imagebuilder.lineage")
models = LazyModule("airflow_imagebuilder.models")
outputs = LazyModule("airflow_imagebuilder.outputs")
retry = LazyModule("airflow_imagebuilder.retry")
triggers = LazyModule("airflow_imagebuilder.triggers")
waiting = LazyModule("airflow_imagebuilder.waiting")
