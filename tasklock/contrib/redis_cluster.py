"""Redis Cluster clients for django-redis and Django's ``RedisCache`` (neither ships one).

django-redis::

    CACHES["locks"] = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://node-a:7000,redis://node-b:7000",   # startup nodes
        "OPTIONS": {"CLIENT_CLASS": "tasklock.contrib.redis_cluster.DjangoRedisClusterClient"},
    }

Django's own backend::

    CACHES["locks"] = {
        "BACKEND": "tasklock.contrib.redis_cluster.RedisClusterCache",
        "LOCATION": "redis://node-a:7000,redis://node-b:7000",
    }

Both hand out one ``redis.cluster.RedisCluster`` per cache object, which routes each command
to the primary of its key's slot (LOCATION's entries are startup nodes, not replicas). The
cache's multi-key calls (``get_many``, ``set_many``) are the cluster client's: keys of
different slots go to different nodes, and ``set_many`` is not atomic across them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django_redis.client import DefaultClient
from redis.cluster import ClusterNode, RedisCluster


def startup_nodes(urls: list[str]) -> list[ClusterNode]:
    """The nodes a cluster client first asks for the slot map, from ``redis://host:port`` URLs."""
    nodes = []
    for url in urls:
        parts = urlsplit(url if "://" in url else f"redis://{url}")
        nodes.append(ClusterNode(parts.hostname or "127.0.0.1", parts.port or 6379))
    return nodes


def credentials(url: str) -> dict[str, Any]:
    """The user name and password a URL carries, as ``RedisCluster`` options."""
    parts = urlsplit(url if "://" in url else f"redis://{url}")
    found = {"username": parts.username, "password": parts.password}
    return {key: value for key, value in found.items() if value}


class DjangoRedisClusterClient(DefaultClient):
    """django-redis ``CLIENT_CLASS`` whose client is a ``RedisCluster`` for reads and writes.

    Honours ``SOCKET_TIMEOUT``, ``SOCKET_CONNECT_TIMEOUT`` and ``CONNECTION_POOL_KWARGS``."""

    def __init__(self, server: Any, params: dict[str, Any], backend: Any) -> None:
        super().__init__(server, params, backend)
        self._startup_urls = list(self._server)
        self._server = self._server[:1]  # one cluster client: every read and write goes there
        self._clients = [None]

    def connect(self, index: int = 0) -> RedisCluster:
        options: dict[str, Any] = dict(self._options.get("CONNECTION_POOL_KWARGS", {}))
        for setting in ("SOCKET_TIMEOUT", "SOCKET_CONNECT_TIMEOUT"):
            if setting in self._options:
                options[setting.lower()] = self._options[setting]
        options.update(credentials(self._startup_urls[0]))
        return RedisCluster(startup_nodes=startup_nodes(self._startup_urls), **options)

    def disconnect(self, index: int = 0, client: Any = None) -> None:
        client = client if client is not None else self._clients[index]
        if client is not None:
            client.disconnect_connection_pools()


class RedisClusterCacheClient(RedisCacheClient):
    """Django ``RedisCacheClient`` whose every client is one ``RedisCluster``.

    OPTIONS are passed to ``RedisCluster`` (``socket_timeout``, ``socket_connect_timeout``, ...);
    ``pool_class`` has no meaning on a cluster and is refused."""

    def __init__(
        self, servers: list[str], serializer: Any = None, pool_class: Any = None, **options: Any
    ) -> None:
        if pool_class is not None:
            raise ValueError("RedisClusterCache makes its own connection pools: remove OPTIONS['pool_class']")
        options.pop("parser_class", None)
        super().__init__(servers, serializer=serializer)
        self._cluster_options = {**options, **credentials(servers[0])}
        self._cluster: RedisCluster | None = None

    def get_client(self, key: Any = None, *, write: bool = False) -> RedisCluster:
        if self._cluster is None:
            self._cluster = RedisCluster(startup_nodes=startup_nodes(self._servers), **self._cluster_options)
        return self._cluster


class RedisClusterCache(RedisCache):
    """Django's ``RedisCache`` on a Redis Cluster (LOCATION: startup nodes)."""

    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisClusterCacheClient
