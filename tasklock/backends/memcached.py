"""memcached through Django's ``PyMemcacheCache``: ``add``, and ``gets`` + ``cas`` for owner checks.

memcached keeps whole seconds, so timeouts are rounded up (a 0.5 s ``add`` would otherwise
store nothing). A ``cas`` with exptime -1 is an atomic compare-and-delete.
pymemcache hides an outage as "not added" for about a second after a failure, so a False
from ``add`` only counts as contention when a holder is visible.
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


def direct_client(client: Any) -> Any:
    """The client to talk through: with a single server, ``HashClient``'s own client for it.

    ``HashClient`` hashes every key to pick a server (rendezvous hashing in pure Python, about
    half the client-side cost of a command) and, for a while after a failure, answers for a
    dead server without asking it. With one server neither helps a lock: the direct client
    shares the socket and settings, and every outage raises.
    """
    servers = getattr(client, "clients", None)
    if servers is not None and len(servers) == 1:
        return next(iter(servers.values()))
    return client


class MemcachedBackend(LockBackend):
    family = "memcached"
    errors = (MemcacheError, OSError)

    def __init__(self, cache: Any) -> None:
        super().__init__(cache)
        send_at_once(cache._cache)
        self.client = direct_client(cache._cache)
        self.index = HeldIndex(self.client, self.make_key, self.errors)

    def add(self, key: str, value: str, timeout: float) -> bool:
        data = value.encode()
        exptime = expire(timeout)
        for _ in range(2):  # the second round covers a holder released in between
            if self.client.add(key, data, expire=exptime, noreply=False):
                self.index.note(key)
                return True
            if self.client.get(key) is not None:
                return False
        raise LockError(f"memcached refused to add {key!r} but shows no holder: the server is unreachable")

    def get(self, key: str) -> str | None:
        raw = self.client.get(key)
        return None if raw is None else raw.decode()

    def _swap(self, key: str, value: str, new: bytes, exptime: int) -> bool:
        stored, cas_id = self.client.gets(key) or (None, None)
        if stored is None or stored.decode() != value:
            return False
        return self.client.cas(key, new, cas_id, expire=exptime, noreply=False) is True

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
