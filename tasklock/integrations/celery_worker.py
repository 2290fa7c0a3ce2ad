"""Celery's worker, from tasklock's side: who runs (for holder metadata), dead holders'
locks freed from the main process, and queue locks of revoked tasks freed.

Connected from ``TaskLockConfig.ready``. ``task_prerun``/``task_postrun`` tell the lock core
which task runs in this context (``core.running``), so a plain ``lock()`` in a task body
names its task too. When a prefork child dies holding a lock (``task_failure`` with
``WorkerLostError`` or ``TimeLimitExceeded``, ``task_revoked`` with ``terminated=True``) the
main process rebuilds the task's lock name from its arguments and hands it to
``dead_holders.reaper``; at worker start the reaper frees the locks of dead processes, and
the child watcher frees those of a child as it dies.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

from billiard.exceptions import TimeLimitExceeded, WorkerLostError
from celery import Task
from celery import signals as celery_signals
from django.db import connections

from ..conf import conf
from ..core import journal, running
from ..dead_holders.reaper import free_journalled, reap_dead_processes, reap_holder
from ..dead_holders.watcher import ChildWatcher, supported
from ..exceptions import shown
from .decorator import lock_name_of_call, spec_of
from .uniqueness import WHILE_EXECUTING, free_queued, queue_name

logger = logging.getLogger("tasklock")


def on_task_prerun(sender: Any = None, task_id: str | None = None, task: Any = None, **kw: Any) -> None:
    """A task starts in this context: the locks it takes name it."""
    if task is not None:
        running.task.set(running.Running(task.name, task_id))


def on_task_postrun(**kw: Any) -> None:
    running.task.set(None)


def _reap_in_background(task: Any, task_id: str, args: Any, kwargs: Any, reason: str) -> None:
    """Reap without blocking the worker's event loop; a failure is logged, never raised."""

    def run() -> None:
        try:
            found = lock_name_of_call(task, tuple(args or ()), dict(kwargs or {}))
            if found is not None:
                reap_holder(*found, task_id, reason)
        except Exception:
            logger.warning("could not free the lock of dead task %s (%s)", task_id, reason, exc_info=True)
        finally:
            connections.close_all()  # this thread's, if the lock cache is a database

    threading.Thread(target=run, name=f"tasklock-reaper-{task_id}", daemon=True).start()


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


def free_revoked(task: Task, task_id: str, args: Any, kwargs: Any) -> bool:
    """Free the queue lock of a task revoked or expired before it ran (owner-checked by id)."""
    from .decorator import lock_name_of_call

    spec = spec_of(task)
    if spec is None or spec.unique == WHILE_EXECUTING:
        return False
    found = lock_name_of_call(task, tuple(args or ()), dict(kwargs or {}))
    if found is None:
        return False
    name, alias = found
    freed = free_queued(queue_name(name, spec.unique), alias, task_id)
    if freed:
        logger.info("freed queue lock %s of revoked task %s", shown(name), task_id)
    return freed


def on_revoked_before_running(
    sender: Any = None, request: Any = None, terminated: bool = False, **kw: Any
) -> None:
    """``task_revoked`` in the worker's main process: a task revoked or expired before it ran
    frees its queue lock (in a thread: the event loop must not wait for the cache)."""
    if terminated or sender is None or request is None or not request.id:
        return

    def run() -> None:
        try:
            free_revoked(sender, request.id, request.args, request.kwargs)
        except Exception:
            logger.warning("could not free the queue lock of revoked task %s", request.id, exc_info=True)

    threading.Thread(target=run, name=f"tasklock-revoked-{request.id}", daemon=True).start()


def _free_waiting(task_ids: list[str]) -> None:
    """The queue locks of revoked tasks this worker holds but does not run (waiting for their
    countdown/ETA, or for a pool process): freed now, not when Celery would look at them."""
    from celery.worker.state import active_requests, requests

    for task_id in task_ids:
        request = requests.get(task_id)
        if request is not None and request not in active_requests:
            on_revoked_before_running(sender=request.task, request=request)


def wrap_revoke(sender: Any = None, **kw: Any) -> None:
    """``worker_init``: wrap the worker's ``revoke`` remote-control command so that it also
    frees the queue locks of the revoked tasks waiting in this worker. Celery itself sends
    ``task_revoked`` for such a task only at its ETA, keeping a duplicate out until then."""
    from celery.utils.functional import maybe_list
    from celery.worker.control import Panel

    revoke = Panel.data.get("revoke")
    if revoke is None or getattr(revoke, "tasklock", False):
        return

    @functools.wraps(revoke)
    def revoke_and_free(state: Any, task_id: Any, *args: Any, **kwargs: Any) -> Any:
        answer = revoke(state, task_id, *args, **kwargs)
        try:
            _free_waiting(list(maybe_list(task_id) or ()))
        except Exception:  # the revoke itself is done: never fail the command
            logger.warning("could not free the queue locks of revoked tasks %s", task_id, exc_info=True)
        return answer

    revoke_and_free.tasklock = True  # type: ignore[attr-defined]
    Panel.data["revoke"] = revoke_and_free


def connect() -> None:
    """Listen to the worker's signals (in its main process; ``worker_process_init`` and the
    task signals in each pool child)."""
    celery_signals.task_failure.connect(on_task_failure, weak=False, dispatch_uid="tasklock.worker.failure")
    celery_signals.task_revoked.connect(on_task_revoked, weak=False, dispatch_uid="tasklock.worker.revoked")
    celery_signals.task_revoked.connect(
        on_revoked_before_running, weak=False, dispatch_uid="tasklock.worker.revoked_before_running"
    )
    celery_signals.worker_ready.connect(on_worker_ready, weak=False, dispatch_uid="tasklock.worker.ready")
    celery_signals.worker_init.connect(on_worker_init, weak=False, dispatch_uid="tasklock.worker.init")
    celery_signals.worker_process_init.connect(
        on_worker_process_init, weak=False, dispatch_uid="tasklock.worker.process_init"
    )
    celery_signals.worker_shutdown.connect(
        on_worker_shutdown, weak=False, dispatch_uid="tasklock.worker.shutdown"
    )
    celery_signals.worker_init.connect(wrap_revoke, weak=False, dispatch_uid="tasklock.worker.revoke")
    celery_signals.task_prerun.connect(on_task_prerun, weak=False, dispatch_uid="tasklock.worker.prerun")
    celery_signals.task_postrun.connect(on_task_postrun, weak=False, dispatch_uid="tasklock.worker.postrun")
