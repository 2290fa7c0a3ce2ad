"""The index of held lock keys that ``locks list`` needs on memcached, which cannot list keys.

Layout: ``SHARDS`` items inside the prefix, ``KEY_PREFIX:#index:N`` (a lock name starting with
``#`` is always hashed, so no lock key looks like one), each a newline-separated list of lock
keys; a key goes to shard ``crc32(key) % SHARDS``. Sharded because a memcached item holds
1 MB by default.

Upkeep stays off the lock's round trip and costs no write of its own: the lock's ``add`` goes
in one write with the note, an ``add`` (creating the shard when missing) and an ``append``
sent with ``noreply``, which memcached runs right after the lock's ``add`` and which nothing
waits for. A refused ``add`` appends its note all the same, so a key refused lately here
sends its note on its own once its ``add`` is stored: contenders do not grow the shards.
Entries are not removed on release. Dead ones (released, expired, cleared) and repeats are
pruned when the index is listed, and by one release in ``PRUNE_ODDS`` of a lock in the shard,
which bounds how far a shard grows between listings. A prune rewrites a shard with ``cas``:
an append landing in between makes the ``cas`` fail and the prune is dropped, so a prune
never loses an entry.

What a listing guarantees: it shows only locks that were held when it read them, and every
lock whose acquirer's append reached memcached before the listing read its shard (the append
arrives with the acquire, or right after it). It misses a lock whose append memcached refused or whose
shard it evicted, which a ``noreply`` write cannot report.
"""

from __future__ import annotations

import logging
import random
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from ..conf import conf
from ..values.names import HASH_MARK
from .base import Stored
from .memcached_commands import add_then, send

logger = logging.getLogger("tasklock")

SHARDS = 64
#: one release in this many prunes the released key's shard
PRUNE_ODDS = 256
#: lock keys read per multi-get while listing
READ_BATCH = 1000
SEPARATOR = b"\n"
#: how many contended lock keys an index remembers before it starts over
MAX_CONTENDED = 4096


def server_client(client: Any, key: str) -> Any:
    """The client of the server that stores ``key``: ``client`` itself, or a HashClient's pick."""
    clients = getattr(client, "clients", None)
    return client if clients is None else clients[client.hasher.get_node(key)]


class HeldIndex:
    """The sharded list of held lock keys, for one pymemcache client."""

    def __init__(self, client: Any, make_key: Callable[[str], str], errors: tuple[type[BaseException], ...]):
        self.client = client
        self.make_key = make_key
        self.errors = errors
        #: per shard: its server's client and the start of the note sent there (the ``add``
        #: that creates the shard, then the ``append`` up to its length)
        self._notes: list[tuple[Any, bytes]] = []
        for number in range(SHARDS):
            shard = self.shard(number)
            server = server_client(client, shard)
            name = server.check_key(shard, server.key_prefix)
            self._notes.append((server, b"add %b 0 0 0 noreply\r\n\r\nappend %b 0 0 " % (name, name)))
        #: lock keys whose ``add`` was refused here lately (their notes follow a stored ``add``)
        self._contended: set[bytes] = set()

    def shard(self, number: int) -> str:
        return self.make_key(f"{conf.KEY_PREFIX}:{HASH_MARK}index:{number}")

    def shard_of(self, key: str) -> str:
        return self.shard(zlib.crc32(key.encode()) % SHARDS)

    def _note_of(self, raw: bytes) -> tuple[Any, bytes]:
        """The client of the server of lock key ``raw``'s shard, and the note to send there."""
        server, start = self._notes[zlib.crc32(raw) % SHARDS]
        return server, b"%b%d noreply\r\n%b%b\r\n" % (start, len(raw) + len(SEPARATOR), raw, SEPARATOR)

    def add(self, client: Any, key: str, data: bytes, exptime: int) -> bool:
        """``add`` of lock ``key`` on its server's ``client``; once stored, ``key`` is noted.

        The note goes in the same write as the ``add`` (memcached runs it right after it), but
        where the shard lives on another server, or ``key`` was refused here lately: a refused
        ``add`` still sends its note, a needless entry, so a contended key's note waits for
        its ``add`` to be stored."""
        raw = key.encode()
        server, note = self._note_of(raw)
        if server is client and raw not in self._contended:
            if add_then(client, key, data, exptime, note):
                return True
            if len(self._contended) >= MAX_CONTENDED:
                self._contended.clear()
            self._contended.add(raw)
            return False
        if not client.add(key, data, expire=exptime, noreply=False):
            return False
        self._contended.discard(raw)
        self._send(server, note, key)
        return True

    def note(self, key: str) -> None:
        """Add a just-acquired ``key``, without waiting for memcached's answer."""
        self._send(*self._note_of(key.encode()), key)

    def _send(self, server: Any, note: bytes, key: str) -> None:
        try:
            send(server, note)
        except self.errors:
            logger.warning("lock key %r held but not indexed: locks list will miss it", key, exc_info=True)

    def forget(self, key: str) -> None:
        """After ``key`` was released: now and then, prune its shard."""
        if random.random() * PRUNE_ODDS >= 1:
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
