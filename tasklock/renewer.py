"""One thread per process that keeps renewing locks alive while their holders work.

A renewing lock is extended (owner-checked) every ``timeout / 3``, as Redisson's watchdog
does. The thread starts with the first renewing acquire in a process, so a prefork child
never inherits its parent's thread (nor its locks: the state is reset after ``fork``).
``forget()`` waits for a renewal of that lock already under way, so no renewal is ever sent
after a ``release()`` returns.
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
import threading
import time
from typing import TYPE_CHECKING

from django.db import connections

if TYPE_CHECKING:
    from .lock import Lock


class Renewer:
    """Renews every renewing lock this process holds, from one daemon thread."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        #: (monotonic time due, tie-breaker, lock); entries of forgotten locks are skipped
        self._due: list[tuple[float, int, Lock]] = []
        self._order = itertools.count()
        self._renewing: set[Lock] = set()
        #: the lock whose renewal is under way, if any
        self._busy: Lock | None = None
        self._thread: threading.Thread | None = None
        #: when the thread will look at ``_due`` again by itself (-inf while it is awake)
        self._sleeps_until = -math.inf

    def __len__(self) -> int:
        return len(self._renewing)

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def watch(self, lock: Lock, due: float) -> None:
        """Renew ``lock`` at monotonic time ``due`` and then on, until it is forgotten or lost."""
        with self._condition:
            self._renewing.add(lock)
            heapq.heappush(self._due, (due, next(self._order), lock))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tasklock-renewer", daemon=True)
                self._thread.start()
            if due < self._sleeps_until:  # else the thread wakes in time by itself: no thread switch
                self._condition.notify()

    def forget(self, lock: Lock) -> None:
        """Stop renewing ``lock``; returns once no renewal of it is under way."""
        with self._condition:
            self._renewing.discard(lock)
            # drop what the thread would skip, but the last entry: the thread may sleep until it
            due = self._due
            while len(due) > 1 and due[0][2] not in self._renewing:
                heapq.heappop(due)
            if threading.current_thread() is self._thread:
                return  # a lock_lost receiver releasing its lock: this thread is not renewing it now
            while self._busy is lock:
                self._condition.wait()

    def _next(self) -> Lock:
        """Wait for the next renewal that is due, and mark its lock busy."""
        with self._condition:
            while True:
                if not self._due:
                    connections.close_all()  # idle: a database cache's connection is not kept
                    self._sleep(math.inf)
                    continue
                due, _, lock = self._due[0]
                if due > time.monotonic():  # a forgotten lock's too: a later watch() needs no wake-up
                    self._sleep(due)
                    continue
                heapq.heappop(self._due)
                if lock in self._renewing:
                    self._busy = lock
                    return lock

    def _sleep(self, until: float) -> None:
        """Wait (holding the condition) until monotonic time ``until`` or a ``notify``."""
        self._sleeps_until = until
        try:
            self._condition.wait(None if until == math.inf else until - time.monotonic())
        finally:
            self._sleeps_until = -math.inf

    def _run(self) -> None:
        while True:
            lock = self._next()
            next_due = None
            try:
                next_due = lock._renew()
            finally:
                with self._condition:
                    self._busy = None
                    if next_due is not None and lock in self._renewing:
                        heapq.heappush(self._due, (next_due, next(self._order), lock))
                    else:
                        self._renewing.discard(lock)
                    self._condition.notify_all()


_renewer = Renewer()


def renewer() -> Renewer:
    """This process's renewer."""
    return _renewer


def _reset_after_fork() -> None:
    """A forked child renews nothing of its parent's and starts its own thread when needed."""
    global _renewer
    _renewer = Renewer()


os.register_at_fork(after_in_child=_reset_after_fork)
