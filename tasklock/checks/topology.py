"""tasklock.W009 (deploy): the lock cache's Redis topology does not match its client or
``TASKLOCK["REPLICAS"]``.

A plain client pointed at a cluster node locks only the keys of that node's slots (the others
answer MOVED); ``REPLICAS`` above the replicas a primary has makes every acquire fail. A server
that does not answer is left to tasklock.W004, which says so.
"""

from __future__ import annotations

from typing import Any

from django.core.cache import caches
from django.core.checks import CheckMessage, Warning

from ..backends.redis import write_client
from ..backends.redis_clients import ERRORS, is_cluster, node_client
from .configured import lock_cache, setting


def _warning(message: str, hint: str, alias: str) -> Warning:
    return Warning(message, hint=hint, obj=f"CACHES[{alias!r}]", id="tasklock.W009")


def _primaries(client: Any) -> list[tuple[str, Any]]:
    """``(address, plain client)`` of every primary behind ``client``."""
    if is_cluster(client):
        return [(f"{node.host}:{node.port}", node_client(client, node)) for node in client.get_primaries()]
    return [("the primary", client)]


def check_redis_topology(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """tasklock.W009: a plain client on a cluster node, or fewer replicas than ``REPLICAS``."""
    found = lock_cache()
    if isinstance(found, list) or found.family != "redis":
        return []
    replicas = setting("REPLICAS")
    warnings: list[CheckMessage] = []
    try:
        client = write_client(caches[found.alias])
        if not is_cluster(client) and client.info("cluster").get("cluster_enabled"):
            warnings.append(
                _warning(
                    "The lock cache's client is a plain Redis client, but its server is a cluster node: "
                    "locks whose keys hash to another node's slots fail (MOVED), and listing sees one node.",
                    "Use a cluster client: django-valkey's ClusterValkeyCache, or "
                    "tasklock.contrib.redis_cluster's DjangoRedisClusterClient / RedisClusterCache.",
                    found.alias,
                )
            )
            return warnings
        for where, primary in _primaries(client) if replicas else []:
            connected = primary.info("replication").get("connected_slaves", 0)
            if connected < replicas:
                warnings.append(
                    _warning(
                        f"TASKLOCK['REPLICAS'] is {replicas}, but {where} of the lock cache reports "
                        f"{connected} connected replica(s): every acquire there will fail with LockError.",
                        "Lower TASKLOCK['REPLICAS'] to the replicas each primary has, or add replicas.",
                        found.alias,
                    )
                )
    except ERRORS:  # no answer: tasklock.W004 reports that it could not ask the server
        return warnings
    return warnings
