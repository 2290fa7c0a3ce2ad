"""memcached through Django's ``PyMemcacheCache``: ``add``, and ``gets`` + ``cas`` for owner checks.

memcached keeps whole seconds on a clock that ticks once a second, so an item stored for N s
lives between N-1 and N s: a lock is stored for its timeout rounded up plus one second, so it
never vanishes before its timeout (and lives at most about a second longer). A ``cas`` with
exptime -1 is an atomic compare-and-delete.
The adapter has its own client of the cache's servers and options, without Django's pickling:
tasklock's values are UTF-8 bytes, and a value someone else stored is read as raw bytes, never
unpickled. It closes with the cache and is never used across a fork (``memcached_client``).
pymemcache's ``HashClient`` hides an outage as "not added" for about a second after a
failure (it answers for a server it marked failed without asking it). So every command goes
to the key's own server client, which raises on an outage. A False from ``add`` is then
contention; when no holder is visible the holder released in between, and ``add`` tries again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

from pymemcache.exceptions import MemcacheError

from ..exceptions import LockError
from .base import CLEAR_TRIES, LockBackend, Stored, text
from .memcached_client import own_client
from .memcached_commands import cas, gets
from .memcached_index import HeldIndex

#: memcached reads an exptime above 30 days as a Unix timestamp
MAX_RELATIVE_EXPIRE = 30 * 24 * 3600
EXPIRE_NOW = -1


def expire(timeout: float) -> int:
    """The exptime that keeps a lock at least ``timeout`` s (one tick more than rounded up)."""
    seconds = math.ceil(timeout) + 1
    return seconds if seconds <= MAX_RELATIVE_EXPIRE else math.ceil(time.time()) + seconds


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
        self.hash_client = own_client(cache)
        servers = server_clients(self.hash_client)
        #: with one server, its client (HashClient's hashing is pure Python and only adds cost)
        self.client = next(iter(servers.values())) if len(servers) == 1 else self.hash_client
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
            if self.index.add(client, key, data, exptime):
                return True
            if client.get(key) is not None:
                return False
            # no holder visible: released in between (a server client raises on an outage)
        return False  # the lock changed hands every time we looked: it is contended

    def get(self, key: str) -> str | None:
        return text(self.server_for(key).get(key))

    def server(self, key: str | None) -> str:
        if self.client is self.hash_client:  # several servers: the key's, by the client's hash
            node = None if key is None else self.hash_client.hasher.get_node(key)
            return f"server {node}" if node else f"servers {', '.join(self.hash_client.clients)}"
        server = self.client.server
        return f"server {':'.join(map(str, server)) if isinstance(server, tuple) else server}"

    def _swap(self, key: str, value: str, new: bytes, exptime: int) -> bool:
        client = self.server_for(key)
        stored, cas_id = gets(client, key)
        if stored != value.encode() or cas_id is None:  # a foreign value: compared, never decoded
            return False
        return cas(client, key, new, cas_id, exptime)

    def versioned(self, key: str) -> tuple[str | None, Any]:
        """``gets``: the value and its cas id (a deleted item reads as absent)."""
        stored, cas_id = gets(self.server_for(key), key)
        return (text(stored), cas_id) if stored else (None, None)

    def swap(self, key: str, version: Any, new: str | None, timeout: float, fenced: bool = False) -> int:
        """``cas`` against the cas id that ``versioned`` read (exptime -1 deletes)."""
        client = self.server_for(key)
        if new is not None:
            return int(cas(client, key, new.encode(), version, expire(timeout)))
        deleted = cas(client, key, b"", version, EXPIRE_NOW)
        if deleted:
            self.index.forget(key)
        return int(deleted)

    def delete_if(self, key: str, value: str) -> bool:
        deleted = self._swap(key, value, b"", EXPIRE_NOW)
        if deleted:
            self.index.forget(key)
        return deleted

    def replace_if(self, key: str, value: str, new_value: str, timeout: float) -> bool:
        return self._swap(key, value, new_value.encode(), expire(timeout))

    def clear(self, key: str) -> str | None:
        """``gets`` + ``cas`` to delete whatever the key holds (foreign values included)."""
        client = self.server_for(key)
        for _ in range(CLEAR_TRIES):
            stored, cas_id = gets(client, key)
            if not stored or cas_id is None:  # absent, or emptied by a delete
                return None
            if cas(client, key, b"", cas_id, EXPIRE_NOW):
                self.index.forget(key)
                return text(stored)
        raise LockError(f"{key!r} changed {CLEAR_TRIES} times while it was being cleared; try again")

    def read(self, keys: list[str]) -> list[Stored]:
        """The values of ``keys`` in one multi-get (a cleared key reads as empty: absent)."""
        found = self.client.get_many(keys)
        return [Stored(key, text(found.get(key) or None)) for key in keys]

    def scan(self) -> Iterator[list[Stored]]:
        """memcached cannot list keys: the held locks come from tasklock's own index."""
        return self.index.scan()
