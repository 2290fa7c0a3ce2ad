"""Freeing the locks of dead holders, from a Celery worker's main process.

When a prefork child dies holding a lock (SIGKILL, the OOM killer, a hard time limit,
``revoke(terminate=True)``), the main process hears of it (``task_failure`` with
``WorkerLostError`` or ``TimeLimitExceeded``, ``task_revoked`` with ``terminated=True``).
tasklock then rebuilds the task's lock name from its arguments, waits until the holder's
process is really gone, and deletes the lock only if its holder metadata names that task
id, this machine and that dead process. A child may also die before the main process has
seen it run anything (a SIGKILL in a body's first milliseconds; with ``acks_late`` and
``reject_on_worker_lost`` no signal comes at all): each pool child keeps a journal of the
locks it holds (``journal``), and the child watcher frees those of a child as it dies. At
worker start it frees the locks of processes of this process space that no longer exist.
A live holder's lock is never touched: copies of one task id can run at the same time, each
with its own pid.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from billiard.exceptions import TimeLimitExceeded, WorkerLostError
from celery import signals as celery_signals
from django.db import connections

from . import journal
from .backends import get_backend
from .backends.base import LockBackend, Stored
from .conf import conf
from .decorators import lock_name_of_call
from .holder import QUEUED, Holder
from .lock import Lock
from .processes import is_gone, same_process_space, wait_gone
from .signals import lock_reaped
from .unique import on_task_revoked as free_revoked_queue_lock
from .watcher import ChildWatcher, supported

logger = logging.getLogger("tasklock")

#: how long the main process waits for a dying child to be gone before it leaves the lock
#: to its lease (a child killed by a hard time limit gets SIGTERM, then SIGKILL 0.1 s later)
GONE_WITHIN = 5.0


def _free(backend: LockBackend, key: str, value: str, holder: Holder, reason: str) -> bool:
    """Delete ``key`` if it still holds ``value``; log and signal it."""
    if not backend.delete_if(key, value):
        return False
    logger.warning(
        "freed lock %r of dead holder %s (task %s, %s)", holder.name, holder.holder, holder.task_id, reason
    )
    if lock_reaped.receivers:
        lock_reaped.send_robust(sender=Lock, name=holder.name, holder=holder, reason=reason)
    return True


def reap_task(task: Any, task_id: str, args: Iterable[Any], kwargs: dict[str, Any], reason: str) -> bool:
    """Free the lock of task ``task_id`` if its holder is a process of this machine that is gone
    (waiting up to ``GONE_WITHIN`` for it to go). True if a lock was freed."""
    found = lock_name_of_call(task, tuple(args or ()), dict(kwargs or {}))
    if found is None:
        return False
    name, alias = found
    backend = get_backend(alias)
    key = backend.key(name)
    value = backend.get(key)
    holder = Holder.decode(value)
    if value is None or holder is None or holder.task_id != task_id or holder.state == QUEUED:
        return False  # a queue lock waits for a message on the broker, not for a process
    if not same_process_space(holder.host, holder.machine) or not wait_gone(holder.pid, GONE_WITHIN):
        return False
    return _free(backend, key, value, holder, reason)


def _reap_in_background(task: Any, task_id: str, args: Any, kwargs: Any, reason: str) -> None:
    """Reap without blocking the worker's event loop; a failure is logged, never raised."""

    def run() -> None:
        try:
            reap_task(task, task_id, args, kwargs, reason)
        except Exception:
            logger.warning("could not free the lock of dead task %s (%s)", task_id, reason, exc_info=True)
        finally:
            connections.close_all()  # this thread's, if the lock cache is a database

    threading.Thread(target=run, name=f"tasklock-reaper-{task_id}", daemon=True).start()


def _dead(stored: Stored) -> Holder | None:
    holder = Holder.decode(stored.value)
    if holder is None or holder.state == QUEUED:
        return None  # a queue lock's holder is its publisher, which may well have exited
    if same_process_space(holder.host, holder.machine) and is_gone(holder.pid):
        return holder
    return None


def reap_dead_processes(alias: str | None = None) -> int:
    """Free every lock in cache ``alias`` whose holder was a process of this process space (host,
    boot and PID namespace) that no longer exists. The number freed. A holder of another boot
    or namespace cannot be proven dead (a clone of this machine looks the same): its lock is
    left to its lease."""
    backend = get_backend(alias)
    freed = 0
    for batch in backend.scan():
        unread = [stored.key for stored in batch if stored.value is None]
        read = {stored.key: stored for stored in backend.read(unread)} if unread else {}
        for stored in batch:
            stored = read.get(stored.key, stored)
            holder = _dead(stored)
            if holder is not None and stored.value is not None:
                freed += _free(backend, stored.key, stored.value, holder, "dead-process")
    return freed


def lock_caches(app: Any) -> set[str]:
    """The caches that ``app``'s locked tasks lock in, and ``TASKLOCK["CACHE"]``."""
    aliases = {conf.CACHE}
    for task in list(app.tasks.values()):
        spec = getattr(task.run, "tasklock", None)
        alias = getattr(spec, "cache", None)
        if alias:
            aliases.add(alias)
    return aliases


def on_task_failure(sender: Any = None, task_id: str | None = None, exception: Any = None, **kw: Any) -> None:
    if isinstance(exception, WorkerLostError):
        reason = "worker-lost"
    elif isinstance(exception, TimeLimitExceeded):
        reason = "time-limit"
    else:
        return
    if sender is not None and task_id:
        _reap_in_background(sender, task_id, kw.get("args"), kw.get("kwargs"), reason)


def on_task_revoked(sender: Any = None, request: Any = None, terminated: bool = False, **kw: Any) -> None:
    if terminated and request is not None and sender is not None:
        _reap_in_background(sender, request.id, request.args, request.kwargs, "revoked")


def free_journalled(pid: int) -> int:
    """Free the locks that pool child ``pid``, now gone, wrote in its journal and whose holder
    metadata still names it (its token, pid and process space). The number freed."""
    freed = 0
    for entry in journal.entries(pid):
        try:
            backend = get_backend(entry.alias)
            value = backend.get(entry.key)
            holder = Holder.decode(value)
            if (
                value is not None
                and holder is not None
                and holder.token == entry.token
                and holder.pid == pid
                and holder.state != QUEUED  # a queue lock waits for its task's next message
                and same_process_space(holder.host, holder.machine)
            ):
                freed += _free(backend, entry.key, value, holder, "worker-lost")
        except Exception:
            logger.warning("could not free lock %r of dead process %s", entry.key, pid, exc_info=True)
    connections.close_all()  # the watcher thread's, if the lock cache is a database
    return freed


def on_worker_init(**kw: Any) -> None:
    """In the worker's main process, before the pool forks: a directory for the children's
    lock journals (where the watcher can see children die)."""
    if supported():
        journal.open_directory()


def on_worker_process_init(**kw: Any) -> None:
    """In each pool child, before it runs a task: start its lock journal."""
    journal.start()


def on_worker_shutdown(**kw: Any) -> None:
    journal.remove_directory()


def on_worker_ready(sender: Any = None, **kw: Any) -> None:
    """At worker start: watch the pool's children, and (in a thread) free the locks of the dead
    processes of this process space."""
    if journal.directory is not None:
        ChildWatcher(free_journalled).start()
    app = getattr(sender, "app", None)

    def run() -> None:
        for alias in sorted(lock_caches(app)) if app is not None else [conf.CACHE]:
            try:
                reap_dead_processes(alias)
            except Exception:
                logger.warning("could not look for dead holders' locks in cache %r", alias, exc_info=True)
        connections.close_all()

    threading.Thread(target=run, name="tasklock-reaper-start", daemon=True).start()


def connect() -> None:
    """Listen to the worker's signals (in its main process; ``worker_process_init`` in each
    pool child)."""
    celery_signals.task_failure.connect(on_task_failure, weak=False, dispatch_uid="tasklock.reaper.failure")
    celery_signals.task_revoked.connect(on_task_revoked, weak=False, dispatch_uid="tasklock.reaper.revoked")
    celery_signals.task_revoked.connect(
        free_revoked_queue_lock, weak=False, dispatch_uid="tasklock.unique.revoked"
    )
    celery_signals.worker_ready.connect(on_worker_ready, weak=False, dispatch_uid="tasklock.reaper.ready")
    celery_signals.worker_init.connect(on_worker_init, weak=False, dispatch_uid="tasklock.reaper.init")
    celery_signals.worker_process_init.connect(
        on_worker_process_init, weak=False, dispatch_uid="tasklock.reaper.process_init"
    )
    celery_signals.worker_shutdown.connect(
        on_worker_shutdown, weak=False, dispatch_uid="tasklock.reaper.shutdown"
    )
