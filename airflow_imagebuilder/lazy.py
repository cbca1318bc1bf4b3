"""Modules loaded on first use, so that DAG parsing loads only what building operators needs.

A DAG processor imports the operator and hook modules but never runs a task: the retry policy, the wait step, the
shared async clients and the pydantic request models are execution machinery, and most of the provider's import
time.  The hook and operator modules refer to them through :class:`LazyModule` (``waiting.next_step(...)``),
and ``tests/test_packaging.py`` checks that parsing a DAG leaves these modules unloaded.
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
