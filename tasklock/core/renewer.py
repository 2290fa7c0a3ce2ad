"""Keeps renewing locks alive while their holders work: one scheduler thread per process, and
renewal calls on worker threads that it never waits on past a lease's end.

A renewing lock is extended (owner-checked) every ``timeout / 3``, as Redisson's watchdog
does. The scheduler (``tasklock-renewer``) starts with the first renewing acquire in a process,
so a prefork child never inherits its parent's threads (nor its locks: the state is reset
after ``fork``). It does no I/O and runs no signal receiver: renewals and ``lock_lost``
reports are jobs for the workers (``tasklock-renewal``), usually one. When every worker has
been stuck in one job for ``STALLED`` s (a frozen connection, a slow receiver) and jobs wait,
another worker starts; extra workers exit after idling ``RETIRE_AFTER`` s. A renewal that has
not answered when only ``GIVE_UP_SHARE`` of the lease is left loses the lock: ``lost`` is True
before the lease ends, whatever the call does.

The renewer only holds weak references to locks: a renewing ``Lock`` dropped without
``release()`` is no longer renewed (a warning says so) and expires with its lease.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.db import connections

from ..exceptions import LockError, shown

if TYPE_CHECKING:
    from .lock import Lock

logger = logging.getLogger("tasklock")

#: a renewal that failed (cache error) is tried again after this share of the lease
RENEW_RETRY_SHARE = 0.05
#: a lock whose renewal has not answered when this share of its lease is left is lost
GIVE_UP_SHARE = 0.05
#: seconds every worker may be stuck in one job while others wait, before another starts
STALLED = 0.05
#: seconds an extra worker idles before it exits (the first one stays)
RETIRE_AFTER = 30.0


class Watch:
    """One renewing acquisition of a lock, as the renewer sees it."""

    __slots__ = ("active", "error", "lock", "mutex", "name", "pending", "running", "timeout", "version")

    def __init__(self, lock: Lock, mutex: threading.Lock) -> None:
        self.lock = weakref.ref(lock)
        self.name = lock.name
        self.timeout = lock.timeout
        #: the holder's extend() and a renewal take turns on it (one per acquisition)
        self.mutex = mutex
        #: renewed until forgotten, lost or dropped
        self.active = True
        #: a renewal of it is queued or running (its entry is then the give-up time)
        self.pending = False
        #: a renewal call of it is under way
        self.running = False
        #: the last renewal's cache error, reported if the lease runs out
        self.error: LockError | None = None
        #: heap entries of an older version are stale
        self.version = 0


class _Worker:
    __slots__ = ("started", "used")

    def __init__(self) -> None:
        #: when its current job started (monotonic); None while idle
        self.started: float | None = None
        #: it ran a job since it last closed its database connections
        self.used = False


def give_up_at(lock: Lock) -> float:
    """When a renewal of ``lock`` that has not answered makes it lost: before its lease ends."""
    return lock._deadline - lock.timeout * GIVE_UP_SHARE


class Renewer:
    """Renews every renewing lock this process holds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the scheduler
        self._work = threading.Condition(self._lock)  # idle workers
        self._settled = threading.Condition(self._lock)  # forget() waiting for a renewal
        #: (monotonic time, tie-breaker, watch, its version): a renewal due, or, while the
        #: watch is pending, when to give up on it
        self._due: list[tuple[float, int, Watch, int]] = []
        self._order = itertools.count()
        #: the watches attached to a lock (``lock._watch``)
        self._watches: set[Watch] = set()
        self._jobs: deque[Callable[[], None]] = deque()
        self._workers: list[_Worker] = []
        self._thread: threading.Thread | None = None
        #: when the scheduler will look at ``_due`` again by itself (-inf while it is awake)
        self._sleeps_until = -math.inf

    def __len__(self) -> int:
        return len(self._watches)

    @property
    def thread(self) -> threading.Thread | None:
        """The scheduler thread, once started."""
        return self._thread

    def watching(self, lock: Lock) -> bool:
        """Whether ``lock`` is renewed (or its last renewal is still under way)."""
        return lock._watch in self._watches

    def watch(self, lock: Lock, mutex: threading.Lock, due: float) -> None:
        """Renew ``lock`` at monotonic time ``due`` and then on, until it is forgotten or lost;
        ``mutex`` is what its holder's extend() and the renewals take turns on."""
        with self._lock:
            if lock._watch is not None:  # a reused Lock: its last acquisition is over
                self._detach(lock)
            watch = lock._watch = Watch(lock, mutex)
            self._watches.add(watch)
            self._schedule(watch, due)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tasklock-renewer", daemon=True)
                self._thread.start()

    def forget(self, lock: Lock) -> None:
        """Stop renewing ``lock``. Returns once no renewal of it is under way, or, if one
        hangs, when the lease is as good as over: the lock is then lost."""
        with self._lock:
            watch = lock._watch
            if watch is None:
                return
            watch.active = False
            due = self._due  # drop what the scheduler would skip, but the last entry: it may sleep until it
            while len(due) > 1 and self._stale(due[0]):
                heapq.heappop(due)
            while watch.running and lock._watch is watch:
                left = give_up_at(lock) - time.monotonic()
                if left <= 0:
                    self._lose(lock, watch, watch.error or lock._unanswered())
                    return
                self._settled.wait(left)
            if lock._watch is watch:
                self._detach(lock)

    def settle(self, lock: Lock, watch: Watch | None, kept: bool, value: str, deadline: float) -> bool:
        """Record an owner-checked rewrite of ``lock`` made while ``watch`` was its watch:
        True if it holds the lock now. Ignored (False) once the lock was lost meanwhile."""
        with self._lock:
            if lock._watch is not watch:
                return False
            if kept:
                lock._value, lock._deadline = value, deadline
                return True
            if watch is None:
                lock._value, lock._deadline = None, 0.0
            else:
                self._lose(lock, watch, None)
            return False

    # --- under self._lock ---------------------------------------------------------------

    def _schedule(self, watch: Watch, when: float) -> None:
        watch.version += 1
        heapq.heappush(self._due, (when, next(self._order), watch, watch.version))
        if when < self._sleeps_until:  # else the scheduler wakes in time by itself
            self._wake.notify()

    @staticmethod
    def _stale(entry: tuple[float, int, Watch, int]) -> bool:
        _, _, watch, version = entry
        return version != watch.version or not watch.active

    def _detach(self, lock: Lock) -> None:
        if lock._watch is not None:
            self._unwatch(lock._watch)
        lock._watch = None

    def _unwatch(self, watch: Watch) -> None:
        watch.active = False
        self._watches.discard(watch)
        if not self._watches:  # idle workers close their database connections
            self._work.notify_all()

    def _lose(self, lock: Lock, watch: Watch, error: LockError | None) -> None:
        """``lock`` is lost: not renewed any more, not held locally; its report is queued."""
        if lock._watch is watch:
            self._detach(lock)
        lock.lost = True
        lock._value, lock._deadline = None, 0.0
        self._settled.notify_all()
        self._enqueue(lambda: lock._report_lost(error))

    def _enqueue(self, job: Callable[[], None]) -> None:
        self._jobs.append(job)
        if any(worker.started is None for worker in self._workers):
            self._work.notify()
        elif threading.current_thread() is not self._thread:
            self._wake.notify()  # the scheduler decides whether another worker starts

    def _fire(self, watch: Watch, now: float) -> None:
        """Act on the due entry of ``watch``: queue its renewal, or give up on it."""
        lock = watch.lock()
        if lock is None:
            self._unwatch(watch)
            name = watch.name
            self._enqueue(lambda: logger.warning(DROPPED, shown(name)))
            return
        give_up = give_up_at(lock)
        if now >= give_up:
            self._lose(lock, watch, watch.error or lock._unanswered())
        elif watch.pending:  # its holder extended it meanwhile: a later give-up
            self._schedule(watch, give_up)
        else:
            watch.pending = True
            self._enqueue(lambda: self._renew(lock, watch))
            self._schedule(watch, give_up)

    # --- the threads ------------------------------------------------------------------

    def _run(self) -> None:
        """The scheduler: fire due entries, start a worker when all are stuck, sleep."""
        due = self._due
        with self._lock:
            while True:
                now = time.monotonic()
                while due and (self._stale(due[0]) or due[0][0] <= now):
                    entry = heapq.heappop(due)
                    if not self._stale(entry):
                        self._fire(entry[2], now)
                until = due[0][0] if due else math.inf
                if self._jobs and all(worker.started is not None for worker in self._workers):
                    stuck = max((worker.started for worker in self._workers), default=-math.inf)
                    if stuck + STALLED <= now:  # type: ignore[operator]
                        self._start_worker()
                        continue
                    until = min(until, stuck + STALLED)  # type: ignore[operator]
                self._sleeps_until = until
                self._wake.wait(None if until == math.inf else until - now)
                self._sleeps_until = -math.inf

    def _start_worker(self) -> None:
        worker = _Worker()
        self._workers.append(worker)
        threading.Thread(target=self._serve, args=(worker,), name="tasklock-renewal", daemon=True).start()

    def _serve(self, me: _Worker) -> None:
        """A worker: run jobs until it retires."""
        while (job := self._next_job(me)) is not None:
            try:
                job()
            except BaseException:  # never lose a worker to a job
                logger.exception("tasklock's renewer: a job failed")
        connections.close_all()

    def _next_job(self, me: _Worker) -> Callable[[], None] | None:
        """Wait for a job; None once this worker idled ``RETIRE_AFTER`` s and is not the last.
        Once nothing is renewed, its database connections are closed (not kept idle)."""
        while True:
            with self._lock:
                me.started = None
                while not self._jobs and (self._watches or not me.used):
                    if not self._work.wait(RETIRE_AFTER) and not self._jobs and len(self._workers) > 1:
                        self._workers.remove(me)
                        return None
                if self._jobs:
                    me.started, me.used = time.monotonic(), True
                    return self._jobs.popleft()
                me.used = False
            connections.close_all()

    def _renew(self, lock: Lock, watch: Watch) -> None:
        """One renewal of ``lock`` (a worker's job)."""
        with self._lock:
            watch.pending = False
            if lock._watch is not watch or not watch.active:  # forgotten or lost meanwhile
                self._settled.notify_all()
                return
            if not watch.mutex.acquire(blocking=False):  # its holder is extending it: soon again
                self._schedule(watch, time.monotonic() + watch.timeout * RENEW_RETRY_SHARE)
                return
            watch.pending = watch.running = True
        try:
            kept, value, deadline, error = False, "", 0.0, None
            try:
                renewal = lock._renewal(watch.timeout)
                if renewal is not None:
                    kept, value, deadline = renewal
            except LockError as exc:
                error = exc
            except Exception as exc:  # anything else: reported as the lock's error, never raised
                error = LockError(f"the renewal of lock {shown(watch.name)} failed: {exc!r}")
                error.__cause__ = exc
            late = self._settle_renewal(lock, watch, kept, value, deadline, error)
            if late:
                lock._undo(value)
        finally:
            watch.mutex.release()

    def _settle_renewal(
        self, lock: Lock, watch: Watch, kept: bool, value: str, deadline: float, error: LockError | None
    ) -> bool:
        """Record a renewal's outcome and schedule the next; True if it came too late and
        renewed a lock already given up (the caller undoes it)."""
        with self._lock:
            watch.pending = watch.running = False
            self._settled.notify_all()
            if lock._watch is not watch:
                return kept
            if error is not None:
                watch.error = error
                if watch.active:
                    retry = time.monotonic() + watch.timeout * RENEW_RETRY_SHARE
                    self._schedule(watch, min(retry, give_up_at(lock)))
            elif kept:
                lock._value, lock._deadline = value, deadline
                watch.error = None
                if watch.active:
                    self._schedule(watch, time.monotonic() + watch.timeout / 3)
            else:
                self._lose(lock, watch, None)
            return False


DROPPED = (
    "lock %s was garbage-collected while held, without release(): it is no longer renewed "
    "and expires when its lease runs out"
)

_renewer = Renewer()


def renewer() -> Renewer:
    """This process's renewer."""
    return _renewer


def _reset_after_fork() -> None:
    """A forked child renews nothing of its parent's and starts its own threads when needed.
    A lock the parent was renewing at the fork may have its mutex held by a thread the child
    does not have: it gets a free one."""
    global _renewer
    parent, _renewer = _renewer, Renewer()
    for watch in list(parent._watches):
        lock = watch.lock()
        if lock is not None:
            lock._extending = threading.Lock()
            lock._watch = None


os.register_at_fork(after_in_child=_reset_after_fork)
