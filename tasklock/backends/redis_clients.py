"""What tasklock needs to know of the Redis-family clients: redis-py and its fork valkey-py
(django-valkey), plain or cluster.

valkey-py's exceptions are its own classes, and a cluster client's own errors
(``RedisClusterException``, ``ValkeyClusterException``) are no ``RedisError``: all of them are
the client's errors, which tasklock re-raises as ``LockError``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

try:  # valkey-py comes with django-valkey
    from valkey.cluster import ValkeyCluster
    from valkey.exceptions import NoScriptError as ValkeyNoScriptError
    from valkey.exceptions import ValkeyClusterException, ValkeyError
except ImportError:  # pragma: no cover - valkey-py is optional
    VALKEY_ERRORS: tuple[type[BaseException], ...] = ()
    VALKEY_NO_SCRIPT: tuple[type[BaseException], ...] = ()
    VALKEY_CLUSTERS: tuple[type, ...] = ()
else:
    VALKEY_ERRORS = (ValkeyError, ValkeyClusterException)
    VALKEY_NO_SCRIPT = (ValkeyNoScriptError,)
    VALKEY_CLUSTERS = (ValkeyCluster,)

#: every error a Redis-family client raises for a failed command or connection
ERRORS: tuple[type[BaseException], ...] = (RedisError, RedisClusterException, OSError, *VALKEY_ERRORS)
NO_SCRIPT: tuple[type[BaseException], ...] = (NoScriptError, *VALKEY_NO_SCRIPT)
CLUSTERS: tuple[type, ...] = (RedisCluster, *VALKEY_CLUSTERS)


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is a Redis Cluster client (redis-py's or valkey-py's)."""
    return isinstance(client, CLUSTERS)


def node_client(cluster: Any, node: Any) -> Any:
    """The plain client that talks to one ``node`` of ``cluster``."""
    connect = getattr(cluster, "get_redis_connection", None) or cluster.get_valkey_connection
    return connect(node)


class LuaScript:
    """A Lua script run by its SHA1 on any redis-py or valkey-py client (a cluster client
    routes it by its keys), loaded on the server the first time it answers ``NOSCRIPT``."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.sha = hashlib.sha1(body).hexdigest()

    def __call__(self, keys: Sequence[str], args: Sequence[Any] = (), *, client: Any) -> Any:
        # execute_command is what the clients' evalsha() calls, two frames later
        try:
            return client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except NO_SCRIPT:
            client.script_load(self.body)
            return client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)

    async def acall(self, keys: Sequence[str], args: Sequence[Any] = (), *, client: Any) -> Any:
        """The same on an asyncio client (``redis.asyncio``, ``valkey.asyncio``)."""
        try:
            return await client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except NO_SCRIPT:
            await client.script_load(self.body)
            return await client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
