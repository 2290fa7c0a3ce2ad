"""The async face of a cache without an asyncio client (memcached, the database; a Redis
behind Sentinel, or one that must confirm on replicas): each call of the synchronous adapter
runs in a worker thread, with that thread's own adapter (pymemcache's client is not
thread-safe, and Django gives each thread its own cache and database connection). Only a
poller's pause is no thread: an ``asyncio.sleep``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from . import get_backend
from .asynchronous import AsyncBackend, to_the_end
from .base import LockBackend


def _as_request(function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` as a request to this worker thread: its database connection is kept
    or closed as ``CONN_MAX_AGE`` says, as Django does at a request's start and end (no worker
    thread keeps one open by default)."""
    close_old_connections()
    try:
        return function(*args)
    finally:
        close_old_connections()


_in_thread = sync_to_async(_as_request, thread_sensitive=False)


def in_worker_thread(function: Callable[..., Any], *args: Any) -> Awaitable[Any]:
    """``function(*args)`` in a worker thread; a cancelled caller waits for it to finish."""
    return to_the_end(_in_thread(function, *args))


def _call_here(alias: str, operation: str, *args: Any) -> Any:
    """Call ``operation`` on this thread's adapter of cache ``alias``."""
    return getattr(get_backend(alias), operation)(*args)


class ThreadedBackend(AsyncBackend):
    """Each call of the adapters of cache ``alias`` in a worker thread. A call is never
    stopped halfway: a cancelled caller waits for it, so the plan's clean-up sees its effect
    (an ``add`` that took the lock meanwhile is then given back)."""

    def __init__(self, sync: LockBackend, alias: str) -> None:
        super().__init__(sync)
        self.alias = alias

    def __getattr__(self, operation: str) -> Callable[..., Awaitable[Any]]:
        if operation.startswith("_"):
            raise AttributeError(operation)

        def call(*args: Any) -> Awaitable[Any]:
            return in_worker_thread(_call_here, self.alias, operation, *args)

        return call

    async def wait(self, key: str, remaining: float, pause: float) -> None:
        """A poller's pause: on the loop, no thread."""
        await asyncio.sleep(min(pause, remaining))
