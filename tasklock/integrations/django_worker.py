"""Django's task workers, from tasklock's side: who runs (for holder metadata and
``task_lock``), and the locks of this machine's dead processes freed when a worker starts.

Connected from ``TaskLockConfig.ready`` to ``task_started``/``task_finished`` of each installed
tasks framework. Django's tasks have no worker-start signal (a ``db_worker`` is one process
that runs tasks itself), so the start-up reaper runs at the first ``task_started`` of each
process, before that task's body: a worker restarted after a ``SIGKILL`` frees its
predecessor's locks before it runs the same job again.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from ..conf import conf
from ..core import running
from ..dead_holders.reaper import reap_dead_processes
from . import django_tasks

logger = logging.getLogger("tasklock")

#: the values the context had before each running task result started, by result id
_before: dict[str, tuple[Any, Any]] = {}
#: the processes (pids) whose first task has started: a fork starts over
_reaped_in: set[int] = set()
_reaping = threading.Lock()


def _lock_cache_of(task: Any) -> str | None:
    """The cache alias of ``task``'s ``task_lock``, if its function has one."""
    return getattr(getattr(django_tasks.locked_function(task), "tasklock", None), "cache", None)


def reap_at_first_start(task: Any) -> None:
    """Once per process: free the locks of dead processes of this machine in
    ``TASKLOCK["CACHE"]`` and in ``task``'s lock cache. Failures are logged, never raised
    (the task must run)."""
    with _reaping:
        if os.getpid() in _reaped_in:
            return
        _reaped_in.add(os.getpid())
    for alias in sorted({conf.CACHE, _lock_cache_of(task) or conf.CACHE}):
        try:
            reap_dead_processes(alias)
        except Exception:
            logger.warning("could not look for dead holders' locks in cache %r", alias, exc_info=True)


def on_task_started(sender: Any = None, task_result: Any = None, **kw: Any) -> None:
    """A Django task starts in this context: ``task_lock`` and the locks it takes name it."""
    if task_result is None:
        return
    reap_at_first_start(task_result.task)
    _before[str(task_result.id)] = (django_tasks.started.get(), running.task.get())
    django_tasks.started.set(task_result)
    running.task.set(running.Running(task_result.task.module_path, str(task_result.id)))


def on_task_finished(sender: Any = None, task_result: Any = None, **kw: Any) -> None:
    """The task ended: the context is as it was before it started."""
    if task_result is None:
        return
    result, who = _before.pop(str(task_result.id), (None, None))
    django_tasks.started.set(result)
    running.task.set(who)


def connect() -> None:
    """Listen to the task signals of each installed tasks framework."""
    for framework in django_tasks.FRAMEWORKS:
        signals = framework.signals
        uid = f"tasklock.django_tasks.{framework.__name__}"
        signals.task_started.connect(on_task_started, weak=False, dispatch_uid=f"{uid}.started")
        signals.task_finished.connect(on_task_finished, weak=False, dispatch_uid=f"{uid}.finished")
