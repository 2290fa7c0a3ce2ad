"""Who holds which lock: the listing behind ``locks list`` and the admin's "Held locks".

Each backend's adapter finds the keys inside ``TASKLOCK["KEY_PREFIX"]`` (``SCAN`` on Redis,
tasklock's index on memcached, a query on the database cache). Names are read from the keys
where a key spells its name, so filtering a page needs no value reads; only the entries shown
are read. Memory stays bounded by one batch plus the page, however many locks are held.

A value tasklock did not write (an app's own ``cache.set`` inside the prefix, bytes that are
not UTF-8) is a foreign holder: it blocks its lock like any holder, so it is listed, named
from its key, with holder ``FOREIGN`` and no task or acquisition time. One under a hashed key
cannot be named and is left out of listings (``find`` by name still sees it).

A limited name (``limit=N``, ``values.slots``) is one key but a row per live holder, each with
its own slot's expiry; its rows come together, in the order of its slots.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from ..backends import get_backend
from ..backends.base import LockBackend, Stored
from ..conf import conf
from ..core.lock import cache_alias
from ..values.holder import QUEUED, RUNNING, Holder
from ..values.names import HASH_MARK
from ..values.slots import Record, held_values

Matcher = Callable[[str], bool]

#: entries completed (values read) at a time while listing everything
READ_BATCH = 1000
#: the holder shown for a value tasklock did not write
FOREIGN = "(foreign value)"
#: what a holder's fields may fail with when a foreign value decodes as a holder by chance
BAD_FIELDS = (TypeError, ValueError, OverflowError, OSError)


def glob(pattern: str) -> Matcher:
    """Names matching a shell glob, case-sensitively (``fnmatch.fnmatchcase``)."""
    return lambda name: fnmatch.fnmatchcase(name, pattern)


def containing(text: str) -> Matcher:
    """Names containing ``text``, ignoring case."""
    folded = text.casefold()
    return lambda name: folded in name.casefold()


@dataclass(frozen=True, slots=True)
class HeldLockInfo:
    """One holder of a lock as an operator sees it; a foreign holder has no acquisition time,
    and no expiry where the server keeps no readable TTL."""

    name: str
    holder: str
    task_name: str | None
    task_id: str | None
    acquired_at: datetime | None
    expires_in: float | None
    #: ``"running"``, or ``"queued"`` for an enqueue-time lock whose task waits in the queue
    state: str = RUNNING
    #: the name's ``limit``: 1 for an ordinary lock
    limit: int = 1
    #: how many live holders the name has (a row each): 1 for an ordinary lock
    holders: int = 1

    @classmethod
    def from_stored(cls, name: str, stored: Stored, now: float) -> HeldLockInfo | None:
        """The entry for ``stored``, the key of lock ``name``; None when the key is absent."""
        if stored.value is None:
            return None
        holder = Holder.decode(stored.value)
        if holder is not None:
            try:
                expires_in = stored.ttl if stored.ttl is not None else holder.expires_at - now
                return cls(
                    holder.name,
                    holder.holder,
                    holder.task_name,
                    holder.task_id,
                    datetime.fromtimestamp(holder.acquired_at, tz=UTC),
                    round(max(expires_in, 0.0), 3),
                    holder.state if holder.state in (RUNNING, QUEUED) else RUNNING,
                )
            except BAD_FIELDS:
                pass
        ttl = None if stored.ttl is None else round(max(stored.ttl, 0.0), 3)
        return cls(name, FOREIGN, None, None, None, ttl)

    def as_json(self) -> dict[str, Any]:
        """The ``locks list --json`` object: exactly these keys."""
        return {
            "name": self.name,
            "holder": self.holder,
            "task_name": self.task_name,
            "task_id": self.task_id,
            "acquired_at": None if self.acquired_at is None else self.acquired_at.isoformat(),
            "expires_in": self.expires_in,
            "state": self.state,
            "limit": self.limit,
        }


def server_ms(record: Record, ttl: float | None, now: float) -> int:
    """The clock of ``record``'s deadlines, now (ms): the server's on Redis (the key lives until
    the last deadline, so that deadline less the key's TTL), else this machine's."""
    if ttl is None or not record.slots:
        return int(now * 1000)
    return max(slot.deadline_ms for slot in record.slots) - round(ttl * 1000)


def rows(name: str, stored: Stored, now: float) -> list[HeldLockInfo]:
    """The entries of ``stored``, the key of lock ``name``: one per live holder of a limited
    name, each expiring with its own slot; else ``HeldLockInfo.from_stored``'s one, if any."""
    record = Record.decode(stored.value)
    if record is None:
        entry = HeldLockInfo.from_stored(name, stored, now)
        return [] if entry is None else [entry]
    clock_ms = server_ms(record, stored.ttl, now)
    live = record.live(clock_ms).slots
    slots = (Stored(stored.key, slot.value, (slot.deadline_ms - clock_ms) / 1000) for slot in live)
    entries = (HeldLockInfo.from_stored(name, slot, now) for slot in slots)
    return [replace(entry, limit=record.limit, holders=len(live)) for entry in entries if entry]


def holder_in(stored: str | None) -> Holder | None:
    """The holder named in a stored value (a limited name's first); None for a foreign value."""
    return next(filter(None, map(Holder.decode, held_values(stored))), None)


@contextmanager
def cache_errors(backend: LockBackend, alias: str, doing: str) -> Iterator[None]:
    """Re-raise the cache client's errors as ``LockError``."""
    try:
        yield
    except backend.errors as exc:
        raise backend.failure(alias, f"while {doing}", exc) from exc


class Inventory:
    """The locks held in one cache (default ``TASKLOCK["CACHE"]``)."""

    def __init__(self, cache: str | None = None) -> None:
        self.alias = cache or conf.CACHE
        self.backend = get_backend(self.alias)

    def _namer(self) -> Callable[[str], str | None]:
        """The name a key spells (None when hashed, or when the key function hides it)."""
        start = self.backend.key_start()
        if self.backend.make_key(f"{conf.KEY_PREFIX}:probe") != start + "probe":
            return lambda key: None
        hashed = start + HASH_MARK
        return lambda key: key[len(start) :] if not key.startswith(hashed) else None

    def _named(self) -> Iterator[tuple[str, Stored]]:
        """``(name, stored)`` for every key inside the prefix; values read only when needed.

        A hashed key names its lock only in a holder's value: one with a foreign value is left out.
        """
        name_in = self._namer()
        for batch in self.backend.scan():
            unread = [s.key for s in batch if s.value is None and name_in(s.key) is None]
            read = {s.key: s for s in self.backend.read(unread)} if unread else {}
            for stored in batch:
                name = name_in(stored.key)
                if name is None:
                    stored = read.get(stored.key, stored)
                    holder = holder_in(stored.value)
                    if holder is None:
                        continue
                    name = holder.name
                yield name, stored

    def _complete(self, found: list[tuple[str, Stored]]) -> list[HeldLockInfo]:
        """Entries for ``found``, reading the values not read yet; locks gone meanwhile left out."""
        unread = [s.key for _, s in found if s.value is None]
        fresh = {s.key: s for s in self.backend.read(unread)} if unread else {}
        now = time.time()
        return [entry for name, s in found for entry in rows(name, fresh.get(s.key, s), now)]

    def each(self, matches: Matcher | None = None) -> Iterator[HeldLockInfo]:
        """Every holder of a lock whose name ``matches``, in scan order, read a batch at a time."""
        with cache_errors(self.backend, self.alias, "listing locks"):
            found: list[tuple[str, Stored]] = []
            for name, stored in self._named():
                if matches is None or matches(name):
                    found.append((name, stored))
                if len(found) >= READ_BATCH:
                    yield from self._complete(found)
                    found = []
            yield from self._complete(found)

    def entries(self, matches: Matcher | None = None) -> list[HeldLockInfo]:
        """Every holder of a lock whose name ``matches``, sorted by name."""
        return sorted(self.each(matches), key=lambda entry: entry.name)

    def page(self, matches: Matcher | None, offset: int, limit: int) -> tuple[int, list[HeldLockInfo]]:
        """How many held locks match, and every holder of the ``limit`` of them from ``offset``,
        in scan order: counted in names (keys), so a limited name's holders add rows, not names."""
        with cache_errors(self.backend, self.alias, "listing locks"):
            count = 0
            picked: list[tuple[str, Stored]] = []
            for name, stored in self._named():
                if matches is None or matches(name):
                    if offset <= count < offset + limit:
                        picked.append((name, stored))
                    count += 1
            return count, self._complete(picked)

    def find(self, names: Iterable[str]) -> list[HeldLockInfo]:
        """The holders of the held locks among ``names``, in their order."""
        found = [(name, Stored(self.backend.key(name))) for name in dict.fromkeys(names)]
        with cache_errors(self.backend, self.alias, "reading locks"):
            return self._complete(found)


def held_locks(match: str | None = None, cache: str | None = None) -> Iterator[HeldLockInfo]:
    """Every holder of a lock in ``cache`` (default ``TASKLOCK["CACHE"]``; a row per holder of a
    limited name) whose name matches the shell glob ``match`` (``fnmatch.fnmatchcase``; None:
    all), in the backend's order, read a batch at a time. A cache error is a ``LockError``,
    raised when iterating."""
    if match is not None and not isinstance(match, str):
        raise TypeError(f"match must be a shell glob (str) or None, got {type(match).__name__}")
    return Inventory(cache_alias(cache)).each(glob(match) if match is not None else None)
