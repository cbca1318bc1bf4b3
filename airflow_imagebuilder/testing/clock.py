"""Clocks for the emulator (real time for the demo, a manual clock that tests advance without sleeping), and how it
reads durations and writes times."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Sequence

#: Seconds: a number, or a ``[low, high]`` range from which each use (a build's phase, a delayed event) draws its own.
Seconds = float | Sequence[float]


def seconds_range(name: str, value: Seconds) -> tuple[float, float]:
    """``(low, high)`` of a number of seconds (equal bounds) or a ``[low, high]`` range; ``name`` is for errors."""
    if isinstance(value, (int, float)):
        low = high = float(value)
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        low, high = float(value[0]), float(value[1])
    else:
        raise ValueError(f"{name}: {value!r} is neither a number nor a [low, high] range")
    if low < 0 or high < low:
        raise ValueError(f"{name}: {value!r} must be >= 0 (and low <= high for a range)")
    return low, high


def timestamp(moment: dt.datetime) -> str:
    """The service's DateTime strings: ISO 8601, milliseconds, UTC ``Z``."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
