"""Enqueue-time uniqueness: the modes, and the queue lock a task holds from publish to start.

A queue lock is an ordinary lock key whose holder metadata has ``state: "queued"`` and the
task id of the one message it stands for. It is owned by that task id: whoever frees it (a
failed publish, a revoke, the task's own start) first checks that the lock still names that
id, and the start converts it into a run lock in one atomic step (see ``LockBackend.claim``
and ``hand_over``). ``until_and_while_executing`` keeps its queue lock under its own name
(the run lock's name plus ``QUEUE_SUFFIX``), so a duplicate may be queued once the body runs.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from celery import Task

from ..backends import get_backend
from ..core import running
from ..core.lock import Lock
from ..exceptions import shown
from ..values.holder import QUEUED, Holder

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
    if not getattr(task, "takes_queue_locks", False):
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


def claim(run: Lock, task_id: str) -> bool:
    """Take ``run`` for task ``task_id`` if it is free, or if it is the queue lock of that task,
    which becomes the run lock in one atomic step (only while it still names that id)."""
    with running.running(running.current().name, task_id):
        return run.acquire_with("claim", task_id)


def hand_over(run: Lock, queue_name: str, task_id: str) -> bool:
    """Take ``run`` for task ``task_id`` (one try), then free lock ``queue_name`` if it is the
    queue lock of that task: one atomic step on Redis; elsewhere the run lock is taken first."""
    with running.running(running.current().name, task_id):
        return run.acquire_with("hand_over", get_backend(run.cache_alias).key(queue_name), task_id)


def requeue(run: Lock, timeout: float) -> bool:
    """Turn held lock ``run`` into the queue lock of its task, living ``timeout`` seconds, for the
    task's own retry to claim (owner-checked; no longer renewed). False if it was no longer
    this holder's."""
    return run.convert(QUEUED, timeout)


def is_queued(held: Lock) -> bool:
    """Whether ``held`` holds a queue lock (after ``requeue``; local, no I/O)."""
    holder = held.holder
    return holder is not None and holder.state == QUEUED
