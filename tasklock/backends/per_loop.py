"""Which async adapter serves a cache in this event loop: one per loop and cache alias.

A Redis-family cache gets an asyncio client of the same servers and options
(``redis_async``), made once per event loop (an asyncio connection belongs to its loop). Any
other cache — memcached, the database, and Redis behind Sentinel or with
``TASKLOCK["REPLICAS"]`` — runs its synchronous adapter in worker threads (``threaded``).
"""

from __future__ import annotations

import asyncio
import weakref

from ..conf import conf
from . import get_backend
from .asynchronous import AsyncBackend
from .redis import RedisBackend
from .redis_async import AsyncRedisBackend, AsyncRedisClusterBackend
from .redis_async_clients import async_client
from .redis_cluster import RedisClusterBackend
from .threaded import ThreadedBackend

#: per event loop: (the adapters' generation, {cache alias: async adapter})
_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, tuple[object, AsyncBackend]]] = (
    weakref.WeakKeyDictionary()
)


def async_backend(alias: str) -> AsyncBackend:
    """The async adapter of cache ``alias`` in the running event loop, made at its first use
    there (and again after a changed CACHES or TASKLOCK gave the thread a new adapter)."""
    sync = get_backend(alias)
    loop = asyncio.get_running_loop()
    made = _by_loop.get(loop)
    if made is None:
        made = _by_loop[loop] = {}
    known = made.get(alias)
    if known is not None and known[0] is sync:
        return known[1]
    adapter = _async_adapter(sync, alias)
    made[alias] = (sync, adapter)
    return adapter


def _async_adapter(sync: object, alias: str) -> AsyncBackend:
    if isinstance(sync, RedisBackend) and not conf.REPLICAS:
        client = async_client(sync.client)
        if client is not None:
            kind = AsyncRedisClusterBackend if isinstance(sync, RedisClusterBackend) else AsyncRedisBackend
            return kind(sync, client)
    return ThreadedBackend(sync, alias)  # type: ignore[arg-type]
