"""What a cache family must do atomically for tasklock."""

from __future__ import annotations

import functools
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Any, ClassVar, NamedTuple

from ..conf import conf
from ..exceptions import LockError
from ..values.calls import Attempt, Call, Grant, Plan
from ..values.holder import QUEUED, Holder
from ..values.names import cache_key

#: how many tries a force-clear makes while the holder keeps rewriting its value
CLEAR_TRIES = 5
#: the first pause of a polling blocking acquire; it doubles up to the backend's ``max_poll``
FIRST_POLL = 0.001
#: how many times ``claim`` tries again when the lock changed between its add and its read
CLAIM_TRIES = 5


def queued_by(stored: str | None, task_id: str) -> bool:
    """Whether ``stored`` is the queue lock of task ``task_id`` (its task has not started)."""
    holder = Holder.decode(stored)
    return holder is not None and holder.state == QUEUED and holder.task_id == task_id


def giving_back(attempt: Attempt, stored: str | None = None) -> Plan[None]:
    """Delete the lock if it holds ``attempt``'s token: ``stored``, its value when known, or
    what the cache holds. For an acquire cut off after the cache took the lock (an interrupt,
    a cancellation), so the lock is not kept by a caller that will never use it."""
    if stored is None:
        stored = yield Call("get", (attempt.key,))
    holder = Holder.decode(stored)
    if holder is not None and holder.token == attempt.token:
        yield Call("delete_if", (attempt.key, stored))


class Stored(NamedTuple):
    """A key inside the prefix; ``value`` None: absent, or not read yet when fresh from ``scan``."""

    key: str
    value: str | None = None
    #: seconds left by the server's own clock; None where the server keeps no readable TTL
    ttl: float | None = None


def full_key(make_key: Callable[[str], str], name: str) -> str:
    """The full cache key of a lock name, inside ``TASKLOCK["KEY_PREFIX"]``."""
    return cache_key(name, conf.KEY_PREFIX, make_key)


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
        while True:
            at = time.monotonic()
            value = attempt.value()
            try:
                added = yield Call("add", (attempt.key, value, attempt.timeout))
            except GeneratorExit:
                raise  # abandoned unfinished (the driver went away): nothing can be sent now
            except BaseException as exc:
                if not isinstance(exc, Exception):  # an interrupt, which may have cut off the reply
                    with suppress(Exception):
                        yield from giving_back(attempt)
                raise
            if added:
                return Grant(value, added, at)
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
