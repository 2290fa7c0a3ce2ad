"""Which adapter serves a Redis-family cache: a cluster client gets the cluster adapter."""

from __future__ import annotations

from typing import Any

from ..exceptions import LockError
from .redis import RedisBackend, write_client
from .redis_clients import ERRORS, is_cluster
from .redis_cluster import RedisClusterBackend


def adapter(cache: Any) -> RedisBackend:
    """The adapter for a Redis-family cache: a cluster client gets the cluster adapter.

    A cluster client connects when it is made, so this can fail: ``LockError``."""
    try:
        client = write_client(cache)
    except ERRORS as exc:
        raise LockError(f"could not make its Redis client: {type(exc).__name__}: {exc}") from exc
    if is_cluster(client):
        return RedisClusterBackend(cache, client)
    return RedisBackend(cache, client)
