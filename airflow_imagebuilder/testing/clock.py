"""Clocks for the emulator: real time for the demo, a manual clock that tests advance without sleeping."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RealClock:
    """Monotonic wall time."""

    def now(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that only moves when :meth:`advance` is called (thread-safe)."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self._listeners: list[Callable[[float], None]] = []

    def add_listener(self, listener: Callable[[float], None]) -> None:
        """Call ``listener(now)`` after every :meth:`advance` (what happens at a time is noticed when it comes)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[float], None]) -> None:
        """Stop calling ``listener``."""
        self._listeners.remove(listener)

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"ManualClock.advance: seconds must be >= 0, got {seconds}")
        with self._lock:
            self._now += seconds
            now = self._now
        for listener in list(self._listeners):
            listener(now)
        return now
