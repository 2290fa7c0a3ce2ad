"""The index of held lock keys that ``locks list`` needs on memcached, which cannot list keys.

Layout: ``SHARDS`` items inside the prefix, ``KEY_PREFIX:#index:N`` (a lock name starting with
``#`` is always hashed, so no lock key looks like one), each a newline-separated list of lock
keys; a key goes to shard ``crc32(key) % SHARDS``. Sharded because a memcached item holds
1 MB by default.

Upkeep stays off the lock's round trip: after a successful acquire, ``add`` (creating the
shard when missing) and ``append`` are sent with ``noreply``, so nothing waits for an answer.
Entries are not removed on release. Dead ones (released, expired, cleared) and repeats are
pruned when the index is listed, and by one release in ``PRUNE_ODDS`` of a lock in the shard,
which bounds how far a shard grows between listings. A prune rewrites a shard with ``cas``:
an append landing in between makes the ``cas`` fail and the prune is dropped, so a prune
never loses an entry.

What a listing guarantees: it shows only locks that were held when it read them, and every
lock whose acquirer's append reached memcached before the listing read its shard (the append
leaves right after the acquire). It misses a lock whose append memcached refused or whose
shard it evicted, which a ``noreply`` write cannot report.
"""

from __future__ import annotations

import logging
import random
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from ..conf import conf
from ..keys import HASH_MARK
from .base import Stored

logger = logging.getLogger("tasklock")

SHARDS = 64
#: one release in this many prunes the released key's shard
PRUNE_ODDS = 256
#: lock keys read per multi-get while listing
READ_BATCH = 1000
SEPARATOR = b"\n"


class HeldIndex:
    """The sharded list of held lock keys, for one pymemcache client."""

    def __init__(self, client: Any, make_key: Callable[[str], str], errors: tuple[type[BaseException], ...]):
        self.client = client
        self.make_key = make_key
        self.errors = errors

    def shard(self, number: int) -> str:
        return self.make_key(f"{conf.KEY_PREFIX}:{HASH_MARK}index:{number}")

    def shard_of(self, key: str) -> str:
        return self.shard(zlib.crc32(key.encode()) % SHARDS)

    def note(self, key: str) -> None:
        """Add a just-acquired ``key``, without waiting for memcached's answer."""
        shard = self.shard_of(key)
        try:
            self.client.add(shard, b"", expire=0, noreply=True)
            self.client.append(shard, key.encode() + SEPARATOR, expire=0, noreply=True)
        except self.errors:
            logger.warning("lock key %r held but not indexed: locks list will miss it", key, exc_info=True)

    def forget(self, key: str) -> None:
        """After ``key`` was released: now and then, prune its shard."""
        if random.randrange(PRUNE_ODDS):
            return
        shard = self.shard_of(key)
        try:
            for _ in self.walk(shard, *(self.client.gets(shard) or (None, None))):
                pass
        except self.errors:
            logger.warning("pruning lock index %r failed", shard, exc_info=True)

    def scan(self) -> Iterator[list[Stored]]:
        """The live locks of every shard, in batches, pruning each shard read."""
        shards = [self.shard(number) for number in range(SHARDS)]
        for shard, (raw, cas_id) in self.client.gets_many(shards).items():
            yield from self.walk(shard, raw, cas_id)

    def walk(self, shard: str, raw: bytes | None, cas_id: bytes | None) -> Iterator[list[Stored]]:
        """The live locks listed in one shard's value ``raw``; then the shard is pruned."""
        if not raw:
            return
        keys = list(dict.fromkeys(raw.decode().split(SEPARATOR.decode())[:-1]))
        live: list[str] = []
        for start in range(0, len(keys), READ_BATCH):
            found = self.client.get_many(keys[start : start + READ_BATCH])
            batch = [Stored(key, value.decode(errors="replace")) for key, value in found.items() if value]
            live.extend(stored.key for stored in batch)
            if batch:
                yield batch
        if len(live) < raw.count(SEPARATOR):
            pruned = "".join(key + SEPARATOR.decode() for key in live).encode()
            self.client.cas(shard, pruned, cas_id, expire=0, noreply=False)
