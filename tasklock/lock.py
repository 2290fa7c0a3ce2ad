"""``Lock``: an owner-tokened lock on a cache key, and the ``lock()`` context manager."""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from threading import get_ident
from types import TracebackType
from typing import Any

from . import journal
from .backends import get_backend
from .backends.base import LockBackend
from .conf import MAX_TIMEOUT, conf, timeout_problem
from .exceptions import LockError, LockNotAcquired, shown
from .holder import QUEUED, Holder
from .renewer import Watch, give_up_at, renewer
from .signals import lock_acquired, lock_lost, lock_released
from .taskbody import running_task

logger = logging.getLogger("tasklock")

#: the first pause of a polling blocking acquire; it doubles up to the backend's max_poll
FIRST_POLL = 0.001
#: the shortest wait for a grant (BLPOP rounds a shorter one to 0, which blocks for ever)
MIN_BLOCK = 0.001
#: the shortest lease a renewing lock may have (it is renewed every third of it)
MIN_RENEWED_TIMEOUT = 0.3
#: what a non-renewing lock's requeue() holds: nothing (only renewing locks share their Lock
#: with the renewer's threads)
NO_MUTEX: AbstractContextManager[object] = nullcontext()

#: the forks between the first process and this one: a Lock taken in another generation was
#: taken by a parent process, and is not held here (same token, but not this process's lock)
_generation = 0


def _count_fork() -> None:
    global _generation
    _generation += 1


os.register_at_fork(after_in_child=_count_fork)


def seconds(value: object, what: str) -> float:
    """``value`` as a lock timeout (finite, > 0, at most ``MAX_TIMEOUT``), else ``ValueError``."""
    if (type(value) is float or type(value) is int) and 0 < value <= MAX_TIMEOUT:  # the usual case
        return float(value)
    if problem := timeout_problem(value):
        raise ValueError(f"{what} {problem}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def cache_alias(cache: object) -> str:
    """``cache`` as a cache alias; None means ``TASKLOCK["CACHE"]``."""
    if cache is None:
        return conf.CACHE
    if not isinstance(cache, str) or not cache:
        error = TypeError if not isinstance(cache, str) else ValueError
        raise error(f"cache must be a cache alias (a str naming an entry of CACHES), got {cache!r:.100}")
    return cache


def granted_at(joined: tuple[float, int], server_us: int) -> float:
    """When a grant made at the server's ``server_us`` happened on our monotonic clock, no
    later than it did (so the lock's local deadline errs on the safe side): the last time we
    were seen in line (``joined``: our clock before that call, the server's during it) plus
    the server's time since, at most now."""
    local, server = joined
    return min(time.monotonic(), max(local, local + (server_us - server) / 1e6))


def _running_task() -> tuple[str | None, str | None]:
    task = running_task()
    if task is None:
        return None, None
    return task.name, task.request.id


class Lock:
    """A lock named ``name`` in cache ``cache`` that lives at most ``timeout`` seconds.

    Only the holder's random ``token`` can release or extend it. ``bool(lock)`` is a local
    flag (held and not past the local deadline); ``owned()`` asks the cache. With
    ``renew=True`` the timeout is a lease that this process's renewer extends every third
    of it while the lock is held; ``lost`` tells whether a renewal found it gone. On Redis a
    blocking acquire waits in line and a release hands the lock to the first live waiter;
    ``fair=True`` also keeps a newcomer from taking a free lock ahead of the line.

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
    ) -> None:
        if not isinstance(name, str) or not name:
            got = shown(name) if isinstance(name, str) else type(name).__name__
            raise ValueError(f"a lock name must be a non-empty str, got {got}")
        self.name = name
        self.timeout = conf.TIMEOUT if timeout is None else seconds(timeout, "lock timeout")
        if not isinstance(renew, bool):
            raise ValueError(f"renew must be True or False, got {renew!r}")
        if renew and self.timeout < MIN_RENEWED_TIMEOUT:
            raise ValueError(
                f"a renewing lock needs a timeout of at least {MIN_RENEWED_TIMEOUT} s, got {self.timeout!r}"
            )
        self.renew = renew
        #: a renewing lock's extend() and its renewals take turns on it (a new one per acquire)
        self._extending: Any = threading.Lock() if renew else NO_MUTEX
        #: the renewer's record of the current renewing acquisition
        self._watch: Watch | None = None
        self.cache_alias = cache_alias(cache)
        self.token = os.urandom(16).hex()  # what secrets.token_hex(16) does, one call less
        self._backend = get_backend(self.cache_alias)
        if not isinstance(fair, bool):
            raise ValueError(f"fair must be True or False, got {fair!r}")
        if fair and not self._backend.hands_over:
            raise ValueError(
                f"fair=True needs a cache whose release hands the lock to the next waiter in line "
                f"(Redis); cache {self.cache_alias!r} ({type(self._backend.cache).__name__}) has "
                "waiters poll, so it cannot serve them in order"
            )
        self.fair = fair
        #: the thread whose cache object ``_backend`` wraps
        self._thread = get_ident()
        try:  # making the key encodes the name: only a lone surrogate makes UTF-8 fail
            self._key = self._backend.key(name)
        except UnicodeEncodeError:
            where = next(at for at, char in enumerate(name) if "\ud800" <= char <= "\udfff")
            raise ValueError(
                f"lock name {shown(name)} has a lone surrogate {name[where]!r} at position {where}: "
                "a name must be text that UTF-8 can encode"
            ) from None
        self._value: str | None = None
        #: the process generation that took the lock (``_generation`` when it did)
        self._generation = _generation
        self._acquired_at = 0.0
        self._deadline = 0.0
        #: set by each successful acquire where the backend fences; strictly increasing per cache
        self.fencing_token: int | None = None
        #: True once a renewal found the lock gone, or could not reach the cache within the lease
        self.lost = False
        #: the running task's (name, id) when the caller (task_lock) already looked; None: acquire looks
        self._task: tuple[str | None, str | None] | None = None

    def __repr__(self) -> str:
        return f"<Lock {shown(self.name)} {'held' if self else 'not held'}>"

    def __bool__(self) -> bool:
        return self._deadline > time.monotonic() and self._generation == _generation

    def _become_own_holder(self) -> None:
        """A copy of a Lock that a fork brought from a parent process: a holder of its own here,
        with its own token, so the parent's lock and this process's never pass for each other."""
        self.token = os.urandom(16).hex()
        self._value, self._deadline, self.fencing_token = None, 0.0, None
        self._generation = _generation

    def _held_value(self) -> str | None:
        """The value this holder wrote, if this process holds the lock (not a parent before a
        fork: a forked child's copy of a held Lock holds nothing)."""
        return self._value if self._generation == _generation else None

    @property
    def holder(self) -> Holder | None:
        """This lock's own metadata while it holds the lock (local, no I/O)."""
        return Holder.decode(self._value) if self._value is not None else None

    def _here(self) -> LockBackend:
        """The adapter of this thread's cache object."""
        return self._backend if get_ident() == self._thread else get_backend(self.cache_alias)

    def _failed(self, backend: LockBackend, operation: str, exc: BaseException) -> LockError:
        doing = f"during {operation} of lock {shown(self.name)}"
        return backend.failure(self.cache_alias, doing, exc, self._key)

    def _call(self, backend: LockBackend, operation: str, *args: Any) -> Any:
        try:
            return getattr(backend, operation)(*args)
        except backend.errors as exc:
            raise self._failed(backend, operation, exc) from exc

    def acquire(self, blocking: bool = False, wait: float | None = None) -> bool:
        """Take the lock: one try, or with ``blocking`` until it is free (or handed over, in
        line) or ``wait`` runs out."""
        if wait is not None:
            if not blocking:
                raise ValueError("wait= needs blocking=True; a non-blocking acquire tries once")
            if not isinstance(wait, int | float) or isinstance(wait, bool) or not wait >= 0:
                raise ValueError(f"wait must be a number of seconds >= 0 (inf: no limit), got {wait!r}")
        started = time.monotonic()
        if self._generation != _generation:
            self._become_own_holder()
        if self._deadline > started:
            raise LockError(f"{self!r} is already held by this Lock; locks are not re-entrant")
        give_up = math.inf if wait is None else started + wait
        task_name, task_id = self._task or _running_task()
        backend = self._backend if get_ident() == self._thread else get_backend(self.cache_alias)
        if self.fair or (blocking and backend.hands_over):
            return self._in_line(backend, started, give_up if blocking else started, task_name, task_id)
        pause = FIRST_POLL
        while True:
            attempt = time.monotonic()
            value = Holder.encode_here(self.token, self.name, time.time(), self.timeout, task_name, task_id)
            try:  # the hot path: no _call frame
                added = backend.add(self._key, value, self.timeout)
            except backend.errors as exc:
                raise self._failed(backend, "add", exc) from exc
            if added:
                self._took(backend, value, added, attempt, started)
                return True
            remaining = give_up - time.monotonic()
            if not blocking or remaining <= 0:
                return False
            self._call(backend, "wait", self._key, remaining, pause * random.uniform(0.5, 1))
            pause = min(pause * 2, backend.max_poll)

    def _in_line(
        self, backend: LockBackend, started: float, give_up: float, task_name: str | None, task_id: str | None
    ) -> bool:
        """Acquire where waiters wait in line and a release hands the lock over: take it, or
        join the line and block for the grant until ``give_up``; then leave the line (keeping
        a grant made meanwhile). ``give_up == started``: one try, never in line."""
        joined: tuple[float, int] | None = None  # when we were last seen in line: local, server µs
        try:
            while True:
                attempt = time.monotonic()
                stay = min(give_up - attempt, backend.max_block)
                value = Holder.encode_here(
                    self.token, self.name, time.time(), self.timeout, task_name, task_id
                )
                turn = self._call(
                    backend, "take_or_queue", self._key, value, self.timeout, self.token, stay, self.fair
                )
                if not turn.fence and stay > 0:
                    joined = (attempt, turn.server_us)
                    block = max(MIN_BLOCK, stay if turn.expires_in is None else min(stay, turn.expires_in))
                    turn = self._call(backend, "await_grant", self._key, self.token, block, self.timeout)
                elif not turn.fence and joined is not None:
                    turn = self._call(backend, "leave", self._key, self.token, self.timeout)
                if turn and turn.fence:
                    if turn.value is None:
                        self._took(backend, value, turn.fence, attempt, started)
                    else:  # handed over by the server: it started when the grant was made
                        since = granted_at(joined, turn.server_us) if joined else started
                        self._took(backend, turn.value, turn.fence, since, started)
                    return True
                if stay <= 0:
                    return False
        except BaseException:  # a cache error, or a soft time limit or signal while blocked
            if joined is not None and not self:
                self._give_up_place(backend)
            raise

    def _give_up_place(self, backend: LockBackend) -> None:
        """Leave the line after an error: a grant made meanwhile is passed on at once, not kept
        by a waiter that will never use it — also one whose reply the error cut off (the
        server had popped it: the lock holds this token)."""
        try:
            turn = backend.leave(self._key, self.token, self.timeout)
            granted = turn.value if turn is not None else backend.get(self._key)
            holder = Holder.decode(granted)
            if holder is not None and holder.token == self.token:
                backend.delete_if(self._key, granted)
        except Exception:  # never hide the error that got us here
            logger.warning(
                "lock %s: could not leave the line; its place lapses", shown(self.name), exc_info=True
            )

    def _took(self, backend: LockBackend, value: str, added: int, attempt: float, started: float) -> None:
        """Record a won acquisition: the value written (and in a pool child's journal), deadline,
        fencing token, renewal."""
        if journal.fd is not None:
            journal.took(self.cache_alias, self._key, self.token)
        self._value, self._generation = value, _generation
        self._acquired_at, self._deadline = attempt, attempt + self.timeout
        self.fencing_token = added if backend.fences else None
        self.lost = False
        if self.renew:
            self._extending = mutex = threading.Lock()
            renewer().watch(self, mutex, attempt + self.timeout / 3)
        if lock_acquired.receivers:
            try:  # a receiver's exception is logged (django.dispatch), never raised
                lock_acquired.send_robust(sender=Lock, lock=self, waited=time.monotonic() - started)
            except BaseException:  # an interrupt inside a receiver: nobody would release the lock
                with suppress(Exception):
                    self.release()
                raise

    def _take_for(self, task_id: str, operation: str, *extra: str) -> bool:
        """One try of ``claim`` or ``hand_over`` for the running task ``task_id``."""
        if self._deadline > time.monotonic():
            raise LockError(f"{self!r} is already held by this Lock; locks are not re-entrant")
        started = time.monotonic()
        task_name, _ = _running_task()
        backend = self._here()
        value = Holder.encode_here(self.token, self.name, time.time(), self.timeout, task_name, task_id)
        added = self._call(backend, operation, self._key, value, self.timeout, *extra, task_id)
        if added:
            self._took(backend, value, added, started, started)
        return bool(added)

    def claim(self, task_id: str) -> bool:
        """Take the lock if it is free, or if it is the queue lock of task ``task_id``, which
        becomes this holder's lock in one atomic step (only while it still names that id)."""
        return self._take_for(task_id, "claim")

    def hand_over(self, queue_name: str, task_id: str) -> bool:
        """Take the lock (one try), then free lock ``queue_name`` if it is the queue lock of task
        ``task_id``: one atomic step on Redis; elsewhere the run lock is taken first."""
        return self._take_for(task_id, "hand_over", self._here().key(queue_name))

    @property
    def queued(self) -> bool:
        """This Lock holds a queue lock (after ``requeue``; local, no I/O)."""
        holder = self.holder
        return holder is not None and holder.state == QUEUED

    def requeue(self, timeout: float) -> bool:
        """Turn this held lock into the queue lock of its task, living ``timeout`` seconds, for
        the task's own retry to claim (owner-checked). It is no longer renewed; ``release()``
        still removes it. False if the lock was no longer this holder's."""
        timeout = seconds(timeout, "requeue timeout")
        if self.renew:
            renewer().forget(self)
        if self._held_value() is None:  # not held, or lost (a renewal hung until the lease's end)
            return False
        with self._extending:
            holder = self.holder
            if holder is None:
                return False
            value = Holder.here(
                self.token, self.name, time.time(), timeout, holder.task_name, holder.task_id, QUEUED
            ).encode()
            attempt = time.monotonic()
            if self._call(self._here(), "replace_if", self._key, self._value, value, timeout):
                self._value, self._deadline = value, attempt + timeout
                return True
            self._value, self._deadline = None, 0.0
            return False

    def release(self) -> bool:
        """Remove this holder's own lock; False if it had expired, was cleared or taken."""
        if self.renew:
            renewer().forget(self)  # before the delete: no renewal is sent after this returns
        value = self._held_value()
        if value is None:
            if journal.fd is not None:  # lost, or requeue() found it gone: none to delete
                journal.let_go(self.token)
            return False
        held_for = time.monotonic() - self._acquired_at
        self._value, self._deadline = None, 0.0
        backend = self._backend if get_ident() == self._thread else get_backend(self.cache_alias)
        released = False
        try:  # the hot path: no _call frame
            released = backend.delete_if(self._key, value)
        except backend.errors as exc:
            raise self._failed(backend, "delete_if", exc) from exc
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
            renewal = self._renewal(timeout)
            if renewal is None or not renewal[0]:
                self._value, self._deadline = None, 0.0
                return False
            self._value, self._deadline = renewal[1], renewal[2]
            return True
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

    def _renewal(self, timeout: float) -> tuple[bool, str, float] | None:
        """An owner-checked rewrite of this holder's value with a TTL of ``timeout``: whether
        it was kept, the new value and deadline; None if not held. Local state is untouched."""
        value = self._held_value()
        holder = Holder.decode(value)
        if holder is None:
            return None
        attempt = time.monotonic()
        renewed = holder.renewed(time.time(), timeout).encode()
        kept = self._call(self._here(), "replace_if", self._key, value, renewed, timeout)
        return bool(kept), renewed, attempt + timeout

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
            backend = self._here()
            backend.delete_if(self._key, value)

    def locked(self) -> bool:
        """True if anyone holds the lock (asks the cache)."""
        return self._call(self._here(), "get", self._key) is not None

    def owned(self) -> bool:
        """True if this Lock's token holds the lock (asks the cache)."""
        if self._held_value() is None:
            return False
        stored = self._call(self._here(), "get", self._key)
        if stored is not None and stored == self._value:
            return True
        holder = Holder.decode(stored)  # a renewal may have rewritten the value meanwhile
        return holder is not None and holder.token == self.token and self._value is not None

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


@contextmanager
def lock(
    name: str,
    timeout: float | None = None,
    *,
    cache: str | None = None,
    blocking: bool = False,
    wait: float | None = None,
    renew: bool = False,
    fair: bool = False,
) -> Iterator[Lock]:
    """Try to take ``name``; yields the Lock, falsy when someone else holds it."""
    held = Lock(name, timeout, cache, renew=renew, fair=fair)
    acquired = held.acquire(blocking=blocking, wait=wait)
    try:
        yield held
    finally:
        if acquired:
            held.release_quietly()
