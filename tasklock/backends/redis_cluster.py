"""Redis Cluster (and Valkey cluster), through a cluster client: every script's keys in one slot.

A lock's waiting line and tickets (and so the waiters' grant lists, named after the tickets)
must share its slot, whatever braces the lock key holds (a name may contain ``{``): they start
with a hash tag ``{n}`` chosen so that ``n`` hashes to the lock key's slot, then spell the lock
key. Listing scans every primary.

No fencing tokens here: a token must be greater than every token the cache handed out before,
for any lock name, and the lock keys of a cluster live on several primaries, each with its own
counter and clock, so no counter beside each key can promise that. ``fencing_token`` stays None.
"""

from __future__ import annotations

import functools
import itertools
from binascii import crc_hqx
from collections.abc import Iterator
from typing import Any

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from .base import LockBackend, Stored
from .redis import RedisBackend, milliseconds
from .redis_clients import LuaScript, node_client
from .redis_line import line_suffixes
from .redis_listing import READ_BODY, scan_node, stored_replies

#: values and TTLs of keys of any slots served by the node it is sent to, passed as ARGV
_READ_ON_NODE = LuaScript(b"#!lua flags=allow-cross-slot-keys,no-writes" + READ_BODY % b"ARGV")


@functools.cache
def slot_tags() -> tuple[str, ...]:
    """For each slot, the smallest decimal number whose CRC16 is that slot: as a hash tag
    ``{n}`` it puts a key in the slot. Made once per process (about 110,000 CRCs, 0.1 s)."""
    tags: dict[int, str] = {}
    for number in itertools.count():
        tag = str(number)
        tags.setdefault(crc_hqx(tag.encode(), 0) % REDIS_CLUSTER_HASH_SLOTS, tag)
        if len(tags) == REDIS_CLUSTER_HASH_SLOTS:
            return tuple(tags[slot] for slot in range(REDIS_CLUSTER_HASH_SLOTS))
    raise AssertionError("unreachable")  # pragma: no cover


class RedisClusterBackend(RedisBackend):
    """A Redis Cluster through a redis-py ``RedisCluster`` or valkey-py ``ValkeyCluster``."""

    fences = False

    def __init__(self, cache: Any, client: Any) -> None:
        super().__init__(cache, client)
        self.companions = functools.lru_cache(maxsize=self.remembered_keys)(self._companions)  # type: ignore[method-assign]

    # a queue lock and its run lock live in different slots, and there is no fencing counter:
    # the enqueue-time steps are the generic single-key ones (taking the run lock first, then
    # freeing the queue lock, so at no moment is neither held)
    claim = LockBackend.claim
    hand_over = LockBackend.hand_over
    add_or_get = LockBackend.add_or_get

    def connection_kwargs(self) -> dict[str, Any]:
        return self.client.get_connection_kwargs()

    @staticmethod
    def _companions(key: str, limit: int = 1) -> tuple[str, str, str]:
        tag = "{" + slot_tags()[key_slot(key.encode())] + "}"
        line, tickets = line_suffixes(limit)
        return key, tag + key + line, tag + key + tickets

    def add(self, key: str, value: str, timeout: float) -> int:
        if self.replicas:
            return self.add_confirmed(key, value, timeout)
        return int(bool(self.client.set(key, value, nx=True, px=milliseconds(timeout))))

    def pipeline_for(self, key: str) -> Any:
        """A pipeline to the primary that serves ``key``'s slot (``WAIT`` has no key to route by)."""
        return node_client(self.client, self.client.get_node_from_key(key)).pipeline(transaction=False)

    def queue_add(self, pipe: Any, key: str, value: str, timeout: float) -> None:
        pipe.set(key, value, nx=True, px=milliseconds(timeout))

    def server(self, key: str | None) -> str:
        node = self.client.get_default_node() if key is None else self.client.get_node_from_key(key)
        return f"cluster node {node.host}:{node.port}"

    def scan(self) -> Iterator[list[Stored]]:
        """``SCAN MATCH`` inside the prefix on every primary, in batches; values unread."""
        match, skip = self.scan_match()
        for node in self.client.get_primaries():
            yield from scan_node(node_client(self.client, node), match, skip)

    def read(self, keys: list[str]) -> list[Stored]:
        """``GET`` + ``PTTL`` of every key: one script call per primary, sent to that node, for
        its keys of any slot (``allow-cross-slot-keys``, Redis 7). A slot moved meanwhile fails
        the call: a ``LockError``, and the next call through the cluster client learns the new map."""
        groups: dict[str, tuple[Any, list[str]]] = {}
        for key in keys:
            node = self.client.get_node_from_key(key)
            groups.setdefault(node.name, (node, []))[1].append(key)
        found: dict[str, Stored] = {}
        for node, group in groups.values():
            replies = _READ_ON_NODE((), group, client=node_client(self.client, node))
            found.update((stored.key, stored) for stored in stored_replies(group, replies))
        return [found[key] for key in keys]
