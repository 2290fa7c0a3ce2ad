"""An asyncio client of the same servers and options as a cache's synchronous Redis-family
client: ``redis.asyncio`` for redis-py, ``valkey.asyncio`` for valkey-py, plain or cluster.

The options are read from the synchronous client (its connection pool's, or its cluster's,
connection kwargs) and carried over where the asyncio client takes them: address, database,
credentials, timeouts, keepalive, TLS, protocol. Objects built for the synchronous client
(its parser class, retry policy, maintenance-notification handlers) are left to the asyncio
client's own defaults. The pool has no size limit (``UNBOUNDED``): every waiter blocked in
line holds a connection for its ``BLPOP``, and a limit made for threads would fail the
coroutine that comes one past it. A client it cannot mirror (a Sentinel-managed
primary) is None: the caller then runs the synchronous adapter in worker threads.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from .redis_clients import is_cluster

#: connection kwargs that hold objects made for the synchronous client
SYNC_OBJECTS = frozenset(
    {
        "parser_class",
        "retry",
        "event_dispatcher",
        "maint_notifications_config",
        "maint_notifications_pool_handler",
        "oss_cluster_maint_notifications_handler",
        "orig_host_address",
        "orig_socket_timeout",
        "orig_socket_connect_timeout",
        "cache",
        "cache_config",
        "connection_pool",
        "max_connections",
    }
)

#: the connections an asyncio pool (a cluster client's: per node) may open
UNBOUNDED = 2**31

#: the asyncio client classes of each client library
CLIENT_CLASSES = {"redis": ("Redis", "RedisCluster"), "valkey": ("Valkey", "ValkeyCluster")}


def parameters(cls: type) -> set[str]:
    """The names ``cls`` takes (its ``__init__`` along the MRO)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            names.update(inspect.signature(init).parameters)
    return names


def accepted(options: dict[str, Any], cls: type, library: str) -> dict[str, Any]:
    """The ``options`` that ``cls`` takes, less the synchronous client's own objects; with the
    client's identity (``CLIENT SETINFO``) worked out once, where redis-py would read its
    package's metadata again at each new connection: a millisecond of the event loop's time
    each, a second for a thousand waiters."""
    names = parameters(cls)
    kept = {name: value for name, value in options.items() if name in names and name not in SYNC_OBJECTS}
    if "driver_info" in names and "driver_info" not in kept:
        kept["driver_info"] = importlib.import_module(f"{library}.driver_info").resolve_driver_info()
    return kept


def library_of(client: Any) -> str:
    """``"redis"`` or ``"valkey"``: the library whose client ``client`` is."""
    library = type(client).__module__.partition(".")[0]
    if library not in CLIENT_CLASSES:
        raise TypeError(f"{type(client).__qualname__} is neither a redis-py nor a valkey-py client")
    return library


def async_client(client: Any) -> Any | None:
    """An asyncio client of ``client``'s servers and options; None for a Sentinel-managed
    primary (no mirror of its manager)."""
    library = library_of(client)
    asyncio_module = importlib.import_module(f"{library}.asyncio")
    plain, cluster = CLIENT_CLASSES[library]
    if is_cluster(client):
        return _cluster_client(client, getattr(asyncio_module, cluster), library)
    pool = client.connection_pool
    if getattr(pool, "service_name", None) is not None:
        return None
    connections = importlib.import_module(f"{library}.asyncio.connection")
    connection_class = next(
        getattr(connections, cls.__name__)
        for cls in inspect.getmro(pool.connection_class)
        if hasattr(connections, cls.__name__)
    )
    options = accepted(pool.connection_kwargs, connection_class, library)
    async_pool = asyncio_module.ConnectionPool(
        connection_class=connection_class, max_connections=UNBOUNDED, **options
    )
    return getattr(asyncio_module, plain)(connection_pool=async_pool)


def _cluster_client(client: Any, cluster_class: type, library: str) -> Any:
    """An asyncio cluster client that starts from the synchronous client's known nodes."""
    node_class = importlib.import_module(f"{library}.asyncio.cluster").ClusterNode
    nodes = [node_class(node.host, node.port) for node in client.get_nodes()]
    options = accepted(client.get_connection_kwargs(), cluster_class, library)
    return cluster_class(startup_nodes=nodes, **options | {"max_connections": UNBOUNDED})
