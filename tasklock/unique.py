"""Enqueue-time uniqueness: the modes, and the queue lock a task holds from publish to start.

A queue lock is an ordinary lock key whose holder metadata has ``state: "queued"`` and the
task id of the one message it stands for. It is owned by that task id: whoever frees it (a
failed publish, a revoke, the task's own start) first checks that the lock still names that
id, and the start converts it into a run lock in one atomic step (see ``LockBackend.claim``
and ``hand_over``). ``until_and_while_executing`` keeps its queue lock under its own name
(the run lock's name plus ``QUEUE_SUFFIX``), so a duplicate may be queued once the body runs.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from celery import Task

from .backends import get_backend
from .exceptions import shown
from .holder import QUEUED, Holder

logger = logging.getLogger("tasklock")

Mode = Literal["while_executing", "until_executing", "until_executed", "until_and_while_executing"]
WHILE_EXECUTING = "while_executing"
UNTIL_EXECUTING = "until_executing"
UNTIL_EXECUTED = "until_executed"
UNTIL_AND_WHILE_EXECUTING = "until_and_while_executing"
MODES = (WHILE_EXECUTING, UNTIL_EXECUTING, UNTIL_EXECUTED, UNTIL_AND_WHILE_EXECUTING)
OnDuplicate = Literal["existing", "raise"]
ON_DUPLICATE = ("existing", "raise")
#: the queue lock of an ``until_and_while_executing`` task is its run lock's name plus this
QUEUE_SUFFIX = ":queued"


def queue_name(name: str, mode: str) -> str:
    """The queue lock's name for a task whose run lock is ``name``."""
    return name + QUEUE_SUFFIX if mode == UNTIL_AND_WHILE_EXECUTING else name


def require_unique_base(task: Task | None, mode: str, function: str) -> None:
    """``TypeError`` unless ``task`` is a ``UniqueTask`` (only its ``apply_async`` takes queue
    locks: elsewhere ``unique=`` would silently do nothing)."""
    from .celery import UniqueTask

    if not isinstance(task, UniqueTask):
        what = f"task {task.name} has base {type(task).__mro__[1].__qualname__}" if task else "it is no task"
        raise TypeError(
            f'task_lock(unique="{mode}") on {function} needs a Celery task with '
            f"base=tasklock.celery.UniqueTask (its apply_async takes the queue lock), but {what} "
            "(system check tasklock.E004)"
        )


@contextmanager
def _cache_errors(backend: Any, alias: str, doing: str, key: str) -> Iterator[None]:
    try:
        yield
    except backend.errors as exc:
        raise backend.failure(alias, doing, exc, key) from exc


class QueueLock:
    """The queue lock of one published task: taken before the publish, owned by ``task_id``."""

    def __init__(self, name: str, alias: str | None, timeout: float, task_name: str, task_id: str) -> None:
        self.name = name
        self.backend = get_backend(alias)
        self.alias = alias or ""
        self.key = self.backend.key(name)
        self.timeout = timeout
        token = os.urandom(16).hex()
        self.value = Holder.here(token, name, time.time(), timeout, task_name, task_id, QUEUED).encode()

    def take(self) -> tuple[bool, Holder | None]:
        """``(True, None)`` if taken; else ``(False, holder)`` of the lock already there (None
        for a value tasklock did not write)."""
        with _cache_errors(self.backend, self.alias, f"taking queue lock {shown(self.name)}", self.key):
            stored = self.backend.add_or_get(self.key, self.value, self.timeout)
        return (True, None) if stored is None else (False, Holder.decode(stored))

    def free(self) -> bool:
        """Remove this queue lock if it is still the one taken (a publish failed)."""
        with _cache_errors(self.backend, self.alias, f"freeing queue lock {shown(self.name)}", self.key):
            return self.backend.delete_if(self.key, self.value)


def free_queued(name: str, alias: str | None, task_id: str) -> bool:
    """Free lock ``name`` only if it is the queue lock of task ``task_id``."""
    backend = get_backend(alias)
    key = backend.key(name)
    with _cache_errors(backend, alias or "", f"freeing queue lock {shown(name)}", key):
        return backend.free_queued(key, task_id)


def free_revoked(task: Task, task_id: str, args: Any, kwargs: Any) -> bool:
    """Free the queue lock of a task revoked or expired before it ran (owner-checked by id)."""
    from .decorators import lock_name_of_call, spec_of

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


def on_task_revoked(sender: Any = None, request: Any = None, terminated: bool = False, **kw: Any) -> None:
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
            on_task_revoked(sender=request.task, request=request)


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
    """Connect the worker's hooks (from ``TaskLockConfig.ready``)."""
    from celery import signals

    signals.worker_init.connect(wrap_revoke, weak=False, dispatch_uid="tasklock.unique.revoke")
