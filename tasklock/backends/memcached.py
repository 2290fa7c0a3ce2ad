"""memcached through Django's ``PyMemcacheCache``: ``add``, and ``gets`` + ``cas`` for owner checks.

memcached keeps whole seconds, so timeouts are rounded up (a 0.5 s ``add`` would otherwise
store nothing). A ``cas`` with exptime -1 is an atomic compare-and-delete.
pymemcache's ``HashClient`` hides an outage as "not added" for about a second after a
failure (it answers for a server it marked failed without asking it). So every command goes
to the key's own server client, which raises on an outage. A False from ``add`` is then
contention; when no holder is visible the holder released in between, and ``add`` tries again.
"""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Iterator
from typing import Any

from pymemcache.exceptions import MemcacheError

from ..exceptions import LockError
from .base import LockBackend, Stored
from .memcached_index import HeldIndex

#: memcached reads an exptime above 30 days as a Unix timestamp
MAX_RELATIVE_EXPIRE = 30 * 24 * 3600
EXPIRE_NOW = -1


def expire(timeout: float) -> int:
    seconds = max(1, math.ceil(timeout))
    return seconds if seconds <= MAX_RELATIVE_EXPIRE else int(time.time()) + seconds


def send_at_once(client: Any) -> None:
    """Set ``TCP_NODELAY`` on the sockets of a pymemcache client (``HashClient`` or not).

    The index writes are ``noreply``: with Nagle's algorithm on (pymemcache's default), the
    next request on that socket then waits for the delayed ACK, ≈ 40 ms per lock cycle.
    """
    if hasattr(client, "default_kwargs"):
        client.default_kwargs["no_delay"] = True
    for server in getattr(client, "clients", {client: client}).values():
        server.no_delay = True  # read when a socket is opened, pooled or not
        sock = getattr(server, "sock", None)
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def server_clients(client: Any) -> dict[Any, Any]:
    """The per-server clients of a ``HashClient``, or the client itself for its one server."""
    return getattr(client, "clients", None) or {None: client}


#: how often ``add`` tries again when it found no holder after a refused add (an honest race
#: with releases); after that the lock counts as contended
ADD_ROUNDS = 10


class MemcachedBackend(LockBackend):
    family = "memcached"
    errors = (MemcacheError, OSError)

    def __init__(self, cache: Any) -> None:
        super().__init__(cache)
        send_at_once(cache._cache)
        self.hash_client = cache._cache
        servers = server_clients(cache._cache)
        #: with one server, its client (HashClient's hashing is pure Python and only adds cost)
        self.client = next(iter(servers.values())) if len(servers) == 1 else cache._cache
        self.index = HeldIndex(self.client, self.make_key, self.errors)

    def server_for(self, key: str) -> Any:
        """The client of the server that holds ``key``: it raises on an outage."""
        if self.client is not self.hash_client:
            return self.client
        node = self.hash_client.hasher.get_node(key)
        if node is None:
            raise LockError(f"no memcached server is up for {key!r}")
        return self.hash_client.clients[node]

    def add(self, key: str, value: str, timeout: float) -> bool:
        client, data, exptime = self.server_for(key), value.encode(), expire(timeout)
        for _ in range(ADD_ROUNDS):
            if client.add(key, data, expire=exptime, noreply=False):
                self.index.note(key)
                return True
            if client.get(key) is not None:
                return False
            # no holder visible: released in between (a server client raises on an outage)
        return False  # the lock changed hands every time we looked: it is contended

    def get(self, key: str) -> str | None:
        raw = self.server_for(key).get(key)
        return None if raw is None else raw.decode()

    def _swap(self, key: str, value: str, new: bytes, exptime: int) -> bool:
        client = self.server_for(key)
        stored, cas_id = client.gets(key) or (None, None)
        if stored is None or stored.decode() != value:
            return False
        return client.cas(key, new, cas_id, expire=exptime, noreply=False) is True

    def delete_if(self, key: str, value: str) -> bool:
        deleted = self._swap(key, value, b"", EXPIRE_NOW)
        if deleted:
            self.index.forget(key)
        return deleted

    def replace_if(self, key: str, value: str, new_value: str, timeout: float) -> bool:
        return self._swap(key, value, new_value.encode(), expire(timeout))

    def scan(self) -> Iterator[list[Stored]]:
        """memcached cannot list keys: the held locks come from tasklock's own index."""
        return self.index.scan()
