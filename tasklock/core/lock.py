"""``Lock``: a named, owner-tokened lock with a lifetime, and the ``lock()`` context manager.

Each operation is a plan (``values.calls``): the sync methods here drive it against this
thread's adapter (``drivers.drive``); how a backend acquires (one ``add``, polling, or waiting
in line) is the backend's own plan.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from contextlib import AbstractContextManager, nullcontext, suppress
from threading import get_ident
from types import TracebackType
from typing import Any

from ..backends import get_backend
from ..backends.base import LockBackend
from ..conf import conf
from ..exceptions import LockError, LockNotAcquired, shown
from ..signals import lock_acquired, lock_attempted, lock_lost, lock_released
from ..values.calls import Attempt, Call, Grant, Plan, one
from ..values.holder import Holder
from ..values.slots import held_values
from . import journal, running
from .arguments import (
    cache_alias,
    fair_flag,
    holder_limit,
    key_of,
    lock_name,
    renew_flag,
    seconds,
    wait_seconds,
)
from .async_face import AsyncFace
from .drivers import drive
from .renewer import Watch, give_up_at, renewer

logger = logging.getLogger("tasklock")

#: the shortest lease a renewing lock may have (it is renewed every third of it)
MIN_RENEWED_TIMEOUT = 0.3
#: what a non-renewing lock's extend() takes turns on: nothing (only renewing locks share
#: their Lock with the renewer's threads)
NO_MUTEX: AbstractContextManager[object] = nullcontext()

#: the forks between the first process and this one: a Lock taken in another generation was
#: taken by a parent process, and is not held here (same token, but not this process's lock)
_generation = 0


def _count_fork() -> None:
    global _generation
    _generation += 1


os.register_at_fork(after_in_child=_count_fork)


class Lock(AsyncFace):
    """A lock named ``name`` in cache ``cache`` that lives at most ``timeout`` seconds.

    Only the holder's random ``token`` can release or extend it. ``bool(lock)`` is a local
    flag (held and not past the local deadline); ``owned()`` asks the cache. With
    ``renew=True`` the timeout is a lease that this process's renewer extends every third
    of it while the lock is held; ``lost`` tells whether a renewal found it gone. On Redis a
    blocking acquire waits in line and a release hands the lock to the first live waiter;
    ``fair=True`` also keeps a newcomer from taking a free lock ahead of the line. With
    ``limit=N`` up to N holders hold the name at once, each in its own slot (``values.slots``):
    its own token, deadline, renewal and fencing token; release and extend act on that slot.

    A Lock may be used from any thread (one at a time): each thread talks to the cache through
    its own cache object, as Django gives every thread one (pymemcache's client is not
    thread-safe); the renewer thread does too.
    """

    def __init__(
        self,
        name: str,
        timeout: float | None = None,
        cache: str | None = None,
        *,
        renew: bool = False,
        fair: bool = False,
        limit: int = 1,
    ) -> None:
        self.name = lock_name(name)
        self.limit = holder_limit(limit)
        #: the backend operations that free and rewrite this holder's value (or slot)
        self._delete, self._replace = (
            ("delete_if", "replace_if") if limit == 1 else ("delete_slot", "replace_slot")
        )
        self.timeout = conf.TIMEOUT if timeout is None else seconds(timeout, "lock timeout")
        self.renew = renew_flag(renew, self.timeout, MIN_RENEWED_TIMEOUT)
        #: a renewing lock's extend() and its renewals take turns on it (a new one per acquire)
        self._extending: Any = threading.Lock() if renew else NO_MUTEX
        #: the renewer's record of the current renewing acquisition
        self._watch: Watch | None = None
        self.cache_alias = cache_alias(cache)
        self.token = os.urandom(16).hex()  # what secrets.token_hex(16) does, one call less
        self._backend = get_backend(self.cache_alias)
        self.fair = fair_flag(fair, self._backend, self.cache_alias)
        #: the thread whose cache object ``_backend`` wraps
        self._thread = get_ident()
        self._key = key_of(self._backend, name)
        self._value: str | None = None
        #: the process generation that took the lock (``_generation`` when it did)
        self._generation = _generation
        self._acquired_at = 0.0
        self._deadline = 0.0
        #: set by each successful acquire where the backend fences; strictly increasing per cache
        self.fencing_token: int | None = None
        #: True once a renewal found the lock gone, or could not reach the cache within the lease
        self.lost = False

    def __repr__(self) -> str:
        return f"<Lock {shown(self.name)} {'held' if self else 'not held'}>"

    def __bool__(self) -> bool:
        return self._deadline > time.monotonic() and self._generation == _generation

    @property
    def holder(self) -> Holder | None:
        """This lock's own metadata while it holds the lock (local, no I/O)."""
        return Holder.decode(self._value) if self._value is not None else None

    def _held_value(self) -> str | None:
        """The value this holder wrote, if this process holds the lock (not a parent before a
        fork: a forked child's copy of a held Lock holds nothing)."""
        return self._value if self._generation == _generation else None

    def _here(self) -> LockBackend:
        """The adapter of this thread's cache object."""
        return self._backend if get_ident() == self._thread else get_backend(self.cache_alias)

    def _failed(self, backend: LockBackend, operation: str, exc: BaseException) -> LockError:
        doing = f"during {operation} of lock {shown(self.name)}"
        return backend.failure(self.cache_alias, doing, exc, self._key)

    def _drive(self, plan: Plan[Any]) -> Any:
        return drive(plan, self._here(), self._failed)

    # -- acquiring ------------------------------------------------------------------------

    def acquire(self, blocking: bool = False, wait: float | None = None) -> bool:
        """Take the lock: one try, or with ``blocking`` until it is free (or handed over, in
        line) or ``wait`` runs out."""
        started = time.monotonic()
        attempt = self._attempt(blocking, wait, started)
        backend = self._backend if get_ident() == self._thread else get_backend(self.cache_alias)
        try:
            grant = drive(backend.acquiring(attempt), backend, self._failed)
        except LockError:
            self._errored(started, blocking)
            raise
        return self._ended(backend, grant, started, blocking)

    def _errored(self, started: float, blocking: bool) -> None:
        """Report an acquire that a cache error ended."""
        if lock_attempted.receivers:
            attempted(self, "error", started, blocking)

    def _ended(self, backend: LockBackend, grant: Grant | None, started: float, blocking: bool) -> bool:
        """Record an acquire's outcome (``grant`` None: not taken); whether it took the lock."""
        if grant is not None:
            self._took(backend, grant, started)
        if lock_attempted.receivers:
            attempted(self, "contended" if grant is None else "acquired", started, blocking)
        return grant is not None

    def _attempt(self, blocking: bool, wait: float | None, started: float) -> Attempt:
        """What an acquire starting at ``started`` asks its backend's acquiring plan for."""
        if wait is not None:
            wait_seconds(blocking, wait)
        if self._generation != _generation:  # a copy a fork brought: a holder of its own here
            self.token, self._generation = os.urandom(16).hex(), _generation
            self._value, self._deadline, self.fencing_token = None, 0.0, None
        if self._deadline > started:
            raise LockError(f"{self!r} is already held by this Lock; locks are not re-entrant")
        who = running.task.get() or running.NOTHING
        give_up = math.inf if wait is None else started + wait
        return Attempt(
            self._key, self.token, self.name, self.timeout, *who, blocking, give_up, self.fair, self.limit
        )

    def acquire_with(self, operation: str, *args: Any) -> bool:
        """One try at the lock through backend ``operation``: an atomic variant of ``add`` that
        takes the key, the value and the timeout, then ``args``, and answers as ``add`` does
        (uniqueness takes a run lock this way, converting its task's queue lock)."""
        started = time.monotonic()
        if self._deadline > started:
            raise LockError(f"{self!r} is already held by this Lock; locks are not re-entrant")
        if self.limit > 1:
            raise LockError(f"{self!r} has limit={self.limit}: {operation} takes a lock of one holder")
        who = running.current()
        value = Holder.encode_here(self.token, self.name, time.time(), self.timeout, who.name, who.id)
        backend = self._here()
        added = drive(one(Call(operation, (self._key, value, self.timeout, *args))), backend, self._failed)
        return bool(added) and self._took(backend, Grant(value, added, started), started)

    def _took(self, backend: LockBackend, grant: Grant, started: float) -> bool:
        """Record a won acquisition: the value written (and in a pool child's journal), deadline,
        fencing token, renewal. True."""
        if journal.fd is not None:
            journal.took(self.cache_alias, self._key, self.token)
        self._value, self._generation = grant.value, _generation
        self._acquired_at, self._deadline = grant.since, grant.since + self.timeout
        self.fencing_token = grant.fence if backend.fences else None
        self.lost = False
        if self.renew:
            self._extending = mutex = threading.Lock()
            renewer().watch(self, mutex, grant.since + self.timeout / 3)
        if lock_acquired.receivers:
            try:  # a receiver's exception is logged (django.dispatch), never raised
                lock_acquired.send_robust(sender=Lock, lock=self, waited=time.monotonic() - started)
            except BaseException:  # an interrupt inside a receiver: nobody would release the lock
                with suppress(Exception):
                    self.release()
                raise
        return True

    # -- releasing, extending -------------------------------------------------------------

    def release(self) -> bool:
        """Remove this holder's own lock; False if it had expired, was cleared or taken."""
        backend = self._backend if get_ident() == self._thread else get_backend(self.cache_alias)
        return drive(self._releasing(), backend, self._failed)

    def _releasing(self) -> Plan[bool]:
        if self.renew:
            renewer().forget(self)  # before the delete: no renewal is sent after this returns
        value = self._value if self._generation == _generation else None  # _held_value(), inlined
        if value is None:
            if journal.fd is not None:  # lost, or converted and then found gone: none to delete
                journal.let_go(self.token)
            return False
        held_for = time.monotonic() - self._acquired_at
        self._value, self._deadline = None, 0.0
        released = False
        try:
            released = yield Call(self._delete, (self._key, value))
        finally:
            if journal.fd is not None:
                journal.let_go(self.token)
            if lock_released.receivers:
                lock_released.send_robust(sender=Lock, lock=self, released=released, held_for=held_for)
        return released

    def extend(self, timeout: float | None = None) -> bool:
        """Reset this holder's TTL to ``timeout`` (default: the lock's); False if not held."""
        timeout = self.timeout if timeout is None else seconds(timeout, "extend timeout")
        if not self.renew:
            return self._settle(self._renewal(timeout))
        # take turns with the renewer, but never wait for a renewal that hangs past the lease
        mutex = self._extending
        if not mutex.acquire(timeout=max(0.0, give_up_at(self) - time.monotonic())):
            return False  # the renewer gives the lock up now
        try:
            watch = self._watch
            renewal = self._renewal(timeout)
            return renewal is not None and renewer().settle(self, watch, *renewal)
        finally:
            mutex.release()

    def _settle(self, renewal: tuple[bool, str, float] | None) -> bool:
        """Keep a renewal's value and deadline, or forget the lock it found gone."""
        if renewal is None or not renewal[0]:
            self._value, self._deadline = None, 0.0
            return False
        self._value, self._deadline = renewal[1], renewal[2]
        return True

    def _renewal(self, timeout: float) -> tuple[bool, str, float] | None:
        """An owner-checked rewrite of this holder's value with a TTL of ``timeout``: whether
        it was kept, the new value and deadline; None if not held. Local state is untouched."""
        return self._drive(self._renewing(timeout))

    def _renewing(self, timeout: float) -> Plan[tuple[bool, str, float] | None]:
        value = self._held_value()
        holder = Holder.decode(value)
        if value is None or holder is None:
            return None
        return (yield from self._rewriting(value, holder.renewed(time.time(), timeout), timeout))

    def _rewriting(self, value: str, holder: Holder, timeout: float) -> Plan[tuple[bool, str, float]]:
        """Put ``holder`` in place of ``value`` with a TTL of ``timeout``, owner-checked."""
        attempt = time.monotonic()
        new_value = holder.encode()
        kept = yield Call(self._replace, (self._key, value, new_value, timeout))
        return bool(kept), new_value, attempt + timeout

    def convert(self, state: str, timeout: float) -> bool:
        """Rewrite this holder's metadata with holder state ``state`` and a TTL of ``timeout``
        (owner-checked), no longer renewed: the lock outlives this holder's run (uniqueness
        turns a run lock into its retry's queue lock). ``release()`` still removes it. False if
        the lock was no longer this holder's."""
        timeout = seconds(timeout, "convert timeout")
        if self.limit > 1:
            raise LockError(f"{self!r} has limit={self.limit}: only a lock of one holder is converted")
        if self.renew:
            renewer().forget(self)
        if self._held_value() is None:  # not held, or lost (a renewal hung until the lease's end)
            return False
        with self._extending:
            value = self._value
            holder = Holder.decode(value)
            if value is None or holder is None:
                return False
            changed = Holder.here(
                self.token, self.name, time.time(), timeout, holder.task_name, holder.task_id, state
            )
            return self._settle(self._drive(self._rewriting(value, changed, timeout)))

    # -- the renewer's hooks --------------------------------------------------------------

    def _unanswered(self) -> LockError:
        """The error of a lock whose lease ran out before a renewal answered."""
        return LockError(
            f"no renewal of lock {shown(self.name)} answered before its lease ({self.timeout:g} s) ran "
            f"out: cache {self.cache_alias!r} did not answer in time (give it a socket timeout)"
        )

    def _report_lost(self, error: LockError | None) -> None:
        """Log and signal that the renewer lost this lock (run by a renewer worker)."""
        logger.error(
            "lock %s was lost while its holder still ran: %s", shown(self.name), error or "found gone"
        )
        if lock_lost.receivers:  # a receiver's exception is logged (django.dispatch), never raised
            lock_lost.send_robust(sender=Lock, lock=self, error=error)

    def _undo(self, value: str) -> None:
        """Delete ``value``, written by a renewal that answered after the lock was given up: the
        lock would otherwise stay held, by nobody, for another lease."""
        with suppress(Exception):
            self._drive(one(Call(self._delete, (self._key, value))))

    # -- asking ---------------------------------------------------------------------------

    def locked(self) -> bool:
        """True if anyone holds the lock (asks the cache)."""
        return self._drive(one(Call("get", (self._key,)))) is not None

    def owned(self) -> bool:
        """True if this Lock's token holds the lock (asks the cache)."""
        return self._drive(self._owning())

    def _owning(self) -> Plan[bool]:
        if self._held_value() is None:
            return False
        stored = yield Call("get", (self._key,))
        if stored is not None and stored == self._value:
            return True
        # a renewal may have rewritten the value meanwhile
        for value in held_values(stored):
            holder = Holder.decode(value)
            if holder is not None and holder.token == self.token and self._value is not None:
                return True
        return False

    # -- a block --------------------------------------------------------------------------

    def release_quietly(self) -> None:
        """Release at the end of a block: a lost or failed release is logged, never raised."""
        try:
            if self.release():
                return
            logger.warning("lock %s had expired or been cleared before it was released", shown(self.name))
        except LockError:
            name = shown(self.name)
            logger.warning("releasing lock %s failed; it lives until its TTL", name, exc_info=True)

    def __enter__(self) -> Lock:
        if not self.acquire():
            raise LockNotAcquired(f"lock {shown(self.name)} is held by someone else")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release_quietly()


def attempted(held: Lock, outcome: str, started: float, blocking: bool) -> None:
    """Send ``lock_attempted``: an acquire of ``held`` begun at ``started`` ended with ``outcome``."""
    waited = time.monotonic() - started
    lock_attempted.send_robust(sender=Lock, lock=held, outcome=outcome, waited=waited, blocking=blocking)
