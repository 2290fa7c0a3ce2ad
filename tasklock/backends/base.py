"""What a cache family must do atomically for tasklock."""

from __future__ import annotations

import functools
import math
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Any, ClassVar, NamedTuple

from ..conf import conf
from ..exceptions import LockError, shown
from ..values.calls import Attempt, Call, Grant, Plan
from ..values.holder import QUEUED, Holder
from ..values.names import cache_key
from ..values.slots import HOLDER_START, Record

#: how many tries a force-clear makes while the holder keeps rewriting its value
CLEAR_TRIES = 5
#: the first pause of a polling blocking acquire; it doubles up to the backend's ``max_poll``
FIRST_POLL = 0.001
#: how many times ``claim`` tries again when the lock changed between its add and its read
CLAIM_TRIES = 5
#: how many compare-and-swaps a change of a limited name's record makes while other holders
#: keep changing it (each failed swap is another holder's change that succeeded)
SLOT_TRIES = 50


def queued_by(stored: str | None, task_id: str) -> bool:
    """Whether ``stored`` is the queue lock of task ``task_id`` (its task has not started)."""
    holder = Holder.decode(stored)
    return holder is not None and holder.state == QUEUED and holder.task_id == task_id


def giving_back(attempt: Attempt, stored: str | None = None) -> Plan[None]:
    """Delete the lock if it holds ``attempt``'s token: ``stored``, its value when known, or
    what the cache holds. For an acquire cut off after the cache took the lock (an interrupt,
    a cancellation), so the lock is not kept by a caller that will never use it."""
    if attempt.limit > 1:
        record = Record.decode((yield Call("get", (attempt.key,))))
        value = stored if stored is not None else record and record.value_of(attempt.token)
        if value:
            yield Call("delete_slot", (attempt.key, value))
        return
    if stored is None:
        stored = yield Call("get", (attempt.key,))
    holder = Holder.decode(stored)
    if holder is not None and holder.token == attempt.token:
        yield Call("delete_if", (attempt.key, stored))


def limit_mismatch(name: str, held: int, wanted: int) -> LockError:
    """The error of an acquire whose limit is not the one the name is held with."""
    return LockError(
        f"lock {shown(name)} is held with limit={held}, but this acquire asks for limit={wanted}: "
        "one name takes one limit (use another name for another limit)"
    )


def checking_limit(attempt: Attempt, fenced: int) -> Plan[None]:
    """Raise ``LockError`` if an acquire of ``attempt`` found its name held with another limit:
    ``fenced`` < 0 is a limited name's answer (minus the limit it is held with); a ``limit=1``
    acquire that was refused reads the value once (a record means another limit)."""
    if fenced < 0:
        raise limit_mismatch(attempt.name, -fenced, attempt.limit)
    if attempt.limit == 1 and not fenced:
        record = Record.decode((yield Call("get", (attempt.key,))))
        if record is not None:
            raise limit_mismatch(attempt.name, record.limit, 1)


class Stored(NamedTuple):
    """A key inside the prefix; ``value`` None: absent, or not read yet when fresh from ``scan``."""

    key: str
    value: str | None = None
    #: seconds left by the server's own clock; None where the server keeps no readable TTL
    ttl: float | None = None


def full_key(make_key: Callable[[str], str], name: str) -> str:
    """The full cache key of a lock name, inside ``TASKLOCK["KEY_PREFIX"]``."""
    return cache_key(name, conf.KEY_PREFIX, make_key)


def now_ms() -> int:
    """This machine's wall clock in ms: a record's deadlines where the server keeps no clock."""
    return time.time_ns() // 1_000_000


def text(raw: bytes | None) -> str | None:
    """A stored value as text. tasklock writes UTF-8; a foreign value's other bytes read as
    U+FFFD, so reading never fails and a foreign value never equals a holder's."""
    return None if raw is None else raw.decode(errors="replace")


class LockBackend(ABC):
    """One adapter per cache family, wrapping one cache instance.

    Values are the holder's encoded metadata; a holder owns a key while the stored value
    equals the one it wrote, so every owner check is a full-value compare.
    """

    family: ClassVar[str]
    #: exceptions of the cache's client; tasklock re-raises them as ``LockError``
    errors: ClassVar[tuple[type[BaseException], ...]] = ()
    #: the longest sleep between two polls of a blocking acquire
    max_poll: ClassVar[float] = 0.01

    #: lock names whose cache keys an adapter remembers (a task's names repeat)
    remembered_keys: ClassVar[int] = 4096
    #: whether ``add`` hands out fencing tokens (issued atomically with the acquisition)
    fences: ClassVar[bool] = False
    #: whether blocked waiters wait in line and a release hands the lock to the first of them
    #: (``take_or_queue``, ``await_grant``, ``leave``); other backends' waiters poll (``wait``)
    hands_over: ClassVar[bool] = False

    def __init__(self, cache: Any) -> None:
        self.cache = cache
        # nothing an adapter holds refers back to it (no bound method of its own): it goes,
        # with its clients, as soon as its thread does, not at the next cyclic collection
        self.make_key = self.key_function(cache)
        #: ``full_key``, remembered per adapter, so a changed TASKLOCK (which drops every
        #: adapter) forgets the keys too
        self.key: Callable[[str], str] = functools.lru_cache(maxsize=self.remembered_keys)(
            functools.partial(full_key, self.make_key)
        )

    @staticmethod
    def key_function(cache: Any) -> Callable[[str], str]:
        """How a raw key becomes the cache's key: the cache's own ``make_key``."""
        return cache.make_key

    def fence_key(self) -> str:
        """The key of the cache's fencing counter: ``KEY_PREFIX fence``, which no lock key
        can be (lock keys continue the prefix with a colon) and no listing scans."""
        return self.make_key(f"{conf.KEY_PREFIX} fence")

    def acquiring(self, attempt: Attempt) -> Plan[Grant | None]:
        """The plan of an acquire: ``add`` once, or, blocking, again after growing pauses
        (``wait``) until it is free or ``attempt.give_up``. None if not taken."""
        pause = FIRST_POLL
        checked = False
        while True:
            at = time.monotonic()
            value = attempt.value()
            try:
                if attempt.limit == 1:
                    added = yield Call("add", (attempt.key, value, attempt.timeout))
                else:
                    added = yield Call("add_slot", (attempt.key, value, attempt.timeout, attempt.limit))
            except GeneratorExit:
                raise  # abandoned unfinished (the driver went away): nothing can be sent now
            except BaseException as exc:
                if not isinstance(exc, Exception):  # an interrupt, which may have cut off the reply
                    with suppress(Exception):
                        yield from giving_back(attempt)
                raise
            if added > 0:
                return Grant(value, added, at)
            if not checked:
                checked = True
                yield from checking_limit(attempt, added)
            remaining = attempt.give_up - time.monotonic()
            if not attempt.blocking or remaining <= 0:
                return None
            yield Call("wait", (attempt.key, remaining, pause * random.uniform(0.5, 1)))
            pause = min(pause * 2, self.max_poll)

    @abstractmethod
    def add(self, key: str, value: str, timeout: float) -> int:
        """Store ``value`` only if ``key`` is absent. 0 if not stored; else the fencing token
        where the backend ``fences``, any positive number where it does not."""

    @abstractmethod
    def get(self, key: str) -> str | None:
        """The stored value, or None when the key is absent or expired."""

    @abstractmethod
    def delete_if(self, key: str, value: str) -> bool:
        """Delete ``key`` only if it still holds ``value``; True if deleted."""

    @abstractmethod
    def replace_if(self, key: str, value: str, new_value: str, timeout: float) -> bool:
        """Store ``new_value`` with a new TTL only if ``key`` still holds ``value``."""

    def convert(self, key: str, value: str, new_value: str, timeout: float) -> int:
        """Put holder ``new_value`` in place of ``value`` with a new TTL, only if ``key`` still
        holds ``value``: 0 if not, else the new fencing token where the backend ``fences``."""
        return int(self.replace_if(key, value, new_value, timeout))

    # -- a limited name (``values.slots``): compare-and-swaps of its record -----------------

    def add_slot(self, key: str, value: str, timeout: float, limit: int) -> int:
        """Take a slot of ``key`` for holder ``value`` if fewer than ``limit`` live holders
        hold it. As ``add``; minus the limit the name is held with when that is not ``limit``."""
        for _ in range(SLOT_TRIES):
            stored, version = self.versioned(key)
            now = now_ms()
            deadline = now + math.ceil(timeout * 1000)
            if stored is None:
                token = self.add(key, Record(limit).adding(value, deadline).encode(), timeout)
            else:
                record = Record.decode(stored)
                if record is None:  # a limit=1 holder (a foreign value: just held)
                    return -1 if stored.startswith(HOLDER_START) else 0
                if record.limit != limit:
                    return -record.limit
                live = record.live(now)
                if live.full():
                    return 0
                changed = live.adding(value, deadline)
                token = self.swap(key, version, changed.encode(), changed.seconds_left(now), fenced=True)
            if token:
                return token
        return 0  # others changed the record every time: contended

    def delete_slot(self, key: str, value: str) -> bool:
        """Free the slot of holder ``value`` (live) in ``key``'s record; True if freed."""
        return self._change_slot(key, value, None, 0.0)

    def replace_slot(self, key: str, value: str, new_value: str, timeout: float) -> bool:
        """Put ``new_value`` in the live slot of ``value`` with a new deadline ``timeout`` away."""
        return self._change_slot(key, value, new_value, timeout)

    def _change_slot(self, key: str, value: str, new_value: str | None, timeout: float) -> bool:
        for _ in range(SLOT_TRIES):
            stored, version = self.versioned(key)
            now = now_ms()
            record = Record.decode(stored)
            if record is None:
                return False
            live = record.live(now)
            if not live.holds(value):
                return False
            if new_value is None:
                changed = live.without(value)
            else:
                changed = live.replacing(value, new_value, now + math.ceil(timeout * 1000))
            record_text = changed.encode() if changed.slots else None
            if self.swap(key, version, record_text, changed.seconds_left(now) if changed.slots else 0.0):
                return True
        raise LockError(f"{key!r} changed {SLOT_TRIES} times while a slot was being changed; try again")

    def versioned(self, key: str) -> tuple[str | None, Any]:
        """The value of ``key`` and what ``swap`` compares to know it unchanged: the value."""
        stored = self.get(key)
        return stored, stored

    def swap(self, key: str, version: Any, new: str | None, timeout: float, fenced: bool = False) -> int:
        """Store ``new`` for ``timeout`` s (None: delete the key) if ``key`` is still at
        ``version`` (from ``versioned``); 0 if not, else (``fenced``) a fencing token where the
        backend fences, or any positive number."""
        if new is None:
            return int(self.delete_if(key, version))
        if fenced:
            return self.convert(key, version, new, timeout)
        return int(self.replace_if(key, version, new, timeout))

    def delete_holder(self, key: str, stored: str, value: str) -> bool:
        """Free holder ``value``, found in ``stored`` (the key's value: itself, or a record)."""
        if stored == value:
            return self.delete_if(key, value)
        return self.delete_slot(key, value)

    def claim(self, key: str, value: str, timeout: float, task_id: str) -> int:
        """Take ``key`` for holder ``value`` if it is free, or if it holds the queue lock of task
        ``task_id`` (converted, in one atomic step, into this holder's lock). As ``add``."""
        for _ in range(CLAIM_TRIES):
            token = self.add(key, value, timeout)
            if token:
                return token
            stored = self.get(key)
            if stored is not None and not queued_by(stored, task_id):
                return 0
            if stored is not None and (token := self.convert(key, stored, value, timeout)):
                return token
        return 0  # it changed hands every time we looked: contended

    def hand_over(self, key: str, value: str, timeout: float, queue_key: str, task_id: str) -> int:
        """Take ``key`` for holder ``value`` (as ``add``), and only then free the queue lock of
        task ``task_id`` at ``queue_key``: at no moment is neither held."""
        token = self.add(key, value, timeout)
        if token:
            self.free_queued(queue_key, task_id)
        return token

    def add_or_get(self, key: str, value: str, timeout: float) -> str | None:
        """Store ``value`` if ``key`` is absent and return None; else the value stored there.
        (A queue lock: no fencing token, it guards no body.)"""
        for _ in range(CLAIM_TRIES):
            if self.add(key, value, timeout):
                return None
            stored = self.get(key)
            if stored is not None:
                return stored
        raise LockError(f"{key!r} changed hands {CLAIM_TRIES} times while being taken; try again")

    def free_queued(self, key: str, task_id: str) -> bool:
        """Delete ``key`` only if it is the queue lock of task ``task_id``."""
        stored = self.get(key)
        return stored is not None and queued_by(stored, task_id) and self.delete_if(key, stored)

    @abstractmethod
    def server(self, key: str | None) -> str:
        """Where ``key`` (any key: None) is stored, for error messages: the server or table."""

    def failure(self, alias: str, doing: str, exc: BaseException, key: str | None = None) -> LockError:
        """``exc`` of the cache's client as a ``LockError``: the alias, where, and the reason."""
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return LockError(f"cache {alias!r} ({self.server(key)}) failed {doing}: {reason}")

    def wait(self, key: str, remaining: float, pause: float) -> None:
        """Block until ``key`` may be free: at most ``remaining`` s; pollers sleep ``pause``."""
        time.sleep(min(pause, remaining))

    def key_start(self) -> str:
        """The start every lock key shares: the cache key of ``KEY_PREFIX:``."""
        return self.make_key(f"{conf.KEY_PREFIX}:")

    def scan(self) -> Iterator[list[Stored]]:
        """Batches of the keys inside the prefix; values may be left unread (None)."""
        raise LockError(f"{type(self.cache).__name__} cannot list the locks it holds")

    def read(self, keys: list[str]) -> list[Stored]:
        """The stored values of ``keys``, in order (None for an absent key)."""
        return [Stored(key, self.get(key)) for key in keys]

    def clear(self, key: str) -> str | None:
        """Delete ``key`` whoever holds it; the value removed, or None if it was absent."""
        for _ in range(CLEAR_TRIES):
            value = self.get(key)
            if value is None or self.delete_if(key, value):
                return value
        raise LockError(f"{key!r} changed {CLEAR_TRIES} times while it was being cleared; try again")
