"""tasklock's own pymemcache client of a ``PyMemcacheCache``'s servers, and its lifetime.

The client lives as long as the adapter that made it (one per thread), closes when Django
closes the cache (``caches.close_all()``: Django's ``request_finished``, Celery's new pool
child), and is never used across a fork: a forked child closes its copies of the parent's
sockets, so parent and children never share a connection (they would read each other's
replies: an ``add`` answered with another process's ``STORED`` is two holders).
"""

from __future__ import annotations

import functools
import os
import weakref
from typing import Any

from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheClientError, MemcacheServerError, MemcacheUnknownCommandError

#: the cache object's attribute with the clients tasklock made of it (weakly held)
CLIENTS_ATTRIBUTE = "_tasklock_clients"

#: every client made here in this process, weakly held: closed in a forked child
_made: weakref.WeakSet[Any] = weakref.WeakSet()


class MemcacheRefused(MemcacheServerError):
    """memcached refused the request and said why (``ERROR <reason>``)."""


class ServerClient(Client):
    """pymemcache's client of one server, keeping the reason memcached gives with ``ERROR``.

    At its connection limit (``-c``) memcached answers a new connection with ``ERROR Too many
    open connections`` and closes it; pymemcache reports that as an unknown command."""

    def _raise_errors(self, line: bytes, name: bytes) -> None:
        # pymemcache's own checks, in one frame (this runs for every reply line), and the reason
        if line.startswith(b"ERROR"):
            if line.startswith(b"ERROR "):
                reason = line[len(b"ERROR ") :].decode(errors="replace")
                raise MemcacheRefused(f"memcached refused {name.decode()}: {reason}")
            raise MemcacheUnknownCommandError(name)
        if line.startswith(b"CLIENT_ERROR"):
            raise MemcacheClientError(line[line.find(b" ") + 1 :])
        if line.startswith(b"SERVER_ERROR"):
            raise MemcacheServerError(line[line.find(b" ") + 1 :])


@functools.cache
def _with_server_clients(hash_class: type) -> type:
    """``hash_class`` (pymemcache's ``HashClient`` or the cache's own) making ``ServerClient``s."""
    return type(hash_class.__name__, (hash_class,), {"client_class": ServerClient})


def own_client(cache: Any) -> Any:
    """A client of ``cache``'s servers with its options, taking and returning plain bytes,
    closed with the cache and after a fork.

    Its sockets send at once (``TCP_NODELAY``): after the index's ``noreply`` writes, Nagle's
    algorithm (pymemcache's default) makes the next request wait for a delayed ACK, ≈ 40 ms.
    It has one connection per server, never a pool (``use_pooling``): one thread uses it.
    """
    options = {k: v for k, v in cache._options.items() if k not in ("serde", "serializer", "deserializer")}
    options.update(no_delay=True, use_pooling=False)
    client = _with_server_clients(cache._class)(cache.client_servers, **options)
    _made.add(client)
    clients = cache.__dict__.get(CLIENTS_ATTRIBUTE)
    if clients is None:
        clients = cache.__dict__[CLIENTS_ATTRIBUTE] = weakref.WeakSet()
        # only weak references: the cache keeps neither the client nor its adapter alive
        cache.close = functools.partial(_close, weakref.ref(cache))
    clients.add(client)
    return client


def _close(cache_ref: weakref.ref[Any], **kwargs: Any) -> None:
    """``cache.close()``: Django's, then tasklock's clients of that cache."""
    cache = cache_ref()
    if cache is None:
        return
    try:
        type(cache).close(cache, **kwargs)
    finally:
        for client in list(cache.__dict__[CLIENTS_ATTRIBUTE]):
            client.close()


def _close_after_fork() -> None:
    """In a forked child: let go of every socket the parent's clients had (closing the child's
    copy of a socket leaves the parent's connection alone); they reconnect when used."""
    for client in list(_made):
        client.close()


os.register_at_fork(after_in_child=_close_after_fork)
