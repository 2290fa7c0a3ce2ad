"""A thread in a prefork worker's main process that sees a pool child die the moment it dies.

Celery reports a lost child (``WorkerLostError``) within milliseconds most of the time, but
up to the pool's 5 s maintenance timer otherwise. This watcher holds a pidfd for every child
that runs a task (``celery.worker.state.active_requests`` with their ``worker_pid``) and
polls them, so a death is seen at once; the requests that child was running are then
handed to ``on_death``. New children are picked up every ``PERIOD`` seconds.
"""

from __future__ import annotations

import logging
import os
import select
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("tasklock")

#: how often the watcher looks for newly started tasks (a death itself wakes it at once)
PERIOD = 0.05

OnDeath = Callable[[int, list[Any]], None]


def _running_in_children() -> dict[int, list[Any]]:
    """The requests the pool's children run now, by child pid (not this process's own)."""
    from celery.worker.state import active_requests

    here = os.getpid()
    found: dict[int, list[Any]] = defaultdict(list)
    try:
        requests = list(active_requests)
    except RuntimeError:  # the event loop changed the set meanwhile: look again next time
        return {}
    for request in requests:
        pid = getattr(request, "worker_pid", None)
        if pid and pid != here:
            found[pid].append(request)
    return found


class ChildWatcher:
    """Calls ``on_death(pid, requests)`` when a child that runs tasks exits."""

    def __init__(self, on_death: OnDeath) -> None:
        self.on_death = on_death
        self._poller = select.poll()
        #: pidfd -> (pid, the requests it ran when last looked at)
        self._watched: dict[int, tuple[int, list[Any]]] = {}
        #: children seen dead whose requests Celery has not let go of yet
        self._dead: set[int] = set()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="tasklock-child-watcher", daemon=True)
        thread.start()
        return thread

    def _run(self) -> None:
        while True:
            try:
                self._look()
                for fd, _ in self._poller.poll(PERIOD * 1000):
                    self._died(fd)
            except Exception:  # never let the watcher die of one bad round
                logger.warning("tasklock's child watcher failed a round", exc_info=True)

    def _look(self) -> None:
        """Watch the children that run tasks now; stop watching those that run none."""
        running = _running_in_children()
        self._dead &= running.keys()
        for pid in self._dead:
            del running[pid]
        for fd, (pid, _) in list(self._watched.items()):
            if pid in running:
                self._watched[fd] = (pid, running.pop(pid))
            else:
                self._forget(fd)
        for pid, requests in running.items():
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                self._dead.add(pid)
                self.on_death(pid, requests)
                continue
            self._watched[fd] = (pid, requests)
            self._poller.register(fd, select.POLLIN)

    def _forget(self, fd: int) -> tuple[int, list[Any]]:
        self._poller.unregister(fd)
        os.close(fd)
        return self._watched.pop(fd)

    def _died(self, fd: int) -> None:
        pid, requests = self._forget(fd)
        self._dead.add(pid)
        self.on_death(pid, requests)


def supported() -> bool:
    """pidfds exist here (Linux 5.3+)."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True
