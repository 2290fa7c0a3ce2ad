"""A thread in a prefork worker's main process that sees a pool child die the moment it dies.

Celery reports a lost child (``WorkerLostError``) within milliseconds most of the time, but
up to the pool's 5 s maintenance timer otherwise, and not at all with ``acks_late`` and
``reject_on_worker_lost``. This watcher holds a pidfd for every pool child that keeps a lock
journal (see ``journal``: each child starts one before it runs a task) and polls them, so a
death is seen at once and handed to ``on_death(pid)``. New children are picked up every
``PERIOD`` seconds; one that died before it was seen is found gone and handed over then.
"""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import Callable

from ..core import journal

logger = logging.getLogger("tasklock")

#: how often the watcher looks for new pool children (a death itself wakes it at once)
PERIOD = 0.05

OnDeath = Callable[[int], None]


class ChildWatcher:
    """Calls ``on_death(pid)`` when a pool child with a journal exits, then drops its journal."""

    def __init__(self, on_death: OnDeath) -> None:
        self.on_death = on_death
        self._poller = select.poll()
        #: pidfd -> pid of each child watched
        self._watched: dict[int, int] = {}

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="tasklock-child-watcher", daemon=True)
        thread.start()
        return thread

    def _run(self) -> None:
        while True:
            try:
                self._look()
                for fd, _ in self._poller.poll(PERIOD * 1000):
                    self._died(self._forget(fd))
            except Exception:  # never let the watcher die of one bad round
                logger.warning("tasklock's child watcher failed a round", exc_info=True)

    def _look(self) -> None:
        """Watch the children whose journals appeared since the last look."""
        watched = set(self._watched.values())
        for pid in journal.children():
            if pid in watched:
                continue
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:  # it died (and was reaped) before we looked
                self._died(pid)
                continue
            self._watched[fd] = pid
            self._poller.register(fd, select.POLLIN)

    def _forget(self, fd: int) -> int:
        self._poller.unregister(fd)
        os.close(fd)
        return self._watched.pop(fd)

    def _died(self, pid: int) -> None:
        try:
            self.on_death(pid)
        finally:
            journal.forget(pid)


def supported() -> bool:
    """pidfds exist here (Linux 5.3+)."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True
