"""aiobotocore clients shared by the waits of one event loop (the triggerer's), opened and closed by their users.

One client per event loop and connection settings (connection id, region, verify, botocore config), instead of one
per trigger per poll: at fleet scale this is what keeps the triggerer's CPU and memory flat.

* A user holds a :meth:`SharedAsyncClients.lease` for as long as it needs the client (a trigger: its whole wait;
  a single call: that call); the client is closed when the last lease of its group ends, so nothing is left
  open when a loop finishes its work.
* Groups are keyed by the loop object itself, weakly: a loop that is gone takes its groups with it, and a new loop
  that happens to reuse an old loop's ``id()`` never gets a client bound to the old one.
* The connection is read again every :attr:`SharedAsyncClients.recheck_interval` seconds; when its settings
  changed (keys rotated, role or endpoint edited), the next call gets a new client built from them.  Every client is
  built from a new hook (:meth:`ClientSource.renewed`): a hook reads its connection once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from asgiref.sync import sync_to_async
from botocore.config import Config


class ClientSource(Protocol):
    """What the cache needs of a hook (:class:`~airflow_imagebuilder.hooks.ImageBuilderHook` has it).

    ``client_settings`` are the arguments its clients are built from (``aws_conn_id``, ``region_name``,
    ``verify``, ``config``); ``renewed()`` is a new hook of them, which reads the connection again.
    """

    aws_conn_id: str | None
    client_settings: dict[str, Any]

    @property
    def log(self) -> Any: ...

    def renewed(self) -> ClientSource: ...

    def connection_fingerprint(self) -> str: ...

    async def get_async_conn(self) -> Any: ...


@dataclasses.dataclass
class _Group:
    """The clients of one loop and connection settings."""

    users: int = 0
    client: Any = None
    context: Any = None
    fingerprint: str | None = None
    checked_at: float = float("-inf")
    #: Clients replaced after a connection change; other users may still be inside a call with them.
    retired: list[Any] = dataclasses.field(default_factory=list)
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)


class SharedAsyncClients:
    """Per event loop cache of aiobotocore clients, keyed by the hook's connection settings.

    :param recheck_interval: seconds between two reads of the connection to notice edits.
    :param clock: monotonic seconds (tests inject their own).
    """

    def __init__(self, recheck_interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.recheck_interval = recheck_interval
        self._clock = clock
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], _Group]] = (
            weakref.WeakKeyDictionary()
        )

    @staticmethod
    def key(hook: ClientSource) -> tuple[Any, ...]:
        """The hook's client settings; a botocore ``Config`` object is its own key (a dict, its JSON)."""
        settings = hook.client_settings
        config = settings["config"]
        return (
            settings["aws_conn_id"],
            settings["region_name"],
            str(settings["verify"]),
            config if isinstance(config, Config) else json.dumps(config, sort_keys=True, default=str),
        )

    def _group(self, hook: ClientSource) -> _Group:
        groups = self._loops.setdefault(asyncio.get_running_loop(), {})
        return groups.setdefault(self.key(hook), _Group())

    @contextlib.asynccontextmanager
    async def lease(self, hook: ClientSource) -> AsyncIterator[None]:
        """Keep the hook's shared client open for the ``async with`` block (closed after the last lease ends)."""
        group = self._group(hook)
        group.users += 1
        try:
            yield
        finally:
            group.users -= 1
            if group.users == 0:
                await self._close(hook, group)

    async def client(self, hook: ClientSource) -> Any:
        """The entered client for the hook's settings; call it inside a :meth:`lease`."""
        group = self._group(hook)
        if group.client is not None and self._clock() - group.checked_at < self.recheck_interval:
            return group.client
        async with group.lock:
            if group.client is None or self._clock() - group.checked_at >= self.recheck_interval:
                fingerprint = await sync_to_async(hook.connection_fingerprint)()
                group.checked_at = self._clock()
                if group.client is not None and fingerprint != group.fingerprint:
                    hook.log.info("Connection %r changed; new client for its next calls", hook.aws_conn_id)
                    self._retire(group)
                if group.client is None:
                    group.context = await hook.renewed().get_async_conn()
                    group.client = await group.context.__aenter__()
                    group.fingerprint = fingerprint
            return group.client

    def invalidate(self, hook: ClientSource) -> None:
        """Build a new client (from a new hook) at the next call: the credentials expired."""
        group = self._group(hook)
        self._retire(group)
        group.checked_at = float("-inf")

    @staticmethod
    def _retire(group: _Group) -> None:
        if group.context is not None:
            group.retired.append(group.context)
        group.client = group.context = None

    async def _close(self, hook: ClientSource, group: _Group) -> None:
        self._retire(group)
        contexts, group.retired = group.retired, []
        groups = self._loops.get(asyncio.get_running_loop(), {})
        if groups.get(self.key(hook)) is group:
            del groups[self.key(hook)]
        for context in contexts:
            await context.__aexit__(None, None, None)

    def open_groups(self) -> int:
        """How many groups of the running loop hold a client or a lease (0 once every user is done)."""
        return len(self._loops.get(asyncio.get_running_loop(), {}))

    async def close_all(self) -> None:
        """Close every client of the running loop, leased or not (for programs that end their loop abruptly)."""
        groups = self._loops.pop(asyncio.get_running_loop(), {})
        for group in groups.values():
            self._retire(group)
            for context in group.retired:
                await context.__aexit__(None, None, None)
            group.retired = []


#: The process-wide cache used by :class:`~airflow_imagebuilder.hooks.ImageBuilderHook`.
SHARED_CLIENTS = SharedAsyncClients()
