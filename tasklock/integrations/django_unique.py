"""Enqueue-time uniqueness for Django's tasks: ``UniqueTask``, whose ``enqueue`` takes the
task's queue lock first and enqueues nothing for a duplicate, and ``unique_task``, Django's
``@task()`` making one.

A Django task result's id is made by the backend inside ``enqueue``, so the queue lock is taken
under a pending id (``PENDING`` + random) and renamed, owner-checked, to the result's id as soon
as ``enqueue`` returns. A worker that starts the task inside that window (one cache round trip)
waits for the rename (``await_enqueued``, at most ``ENQUEUE_GRACE`` s) before its start claims
or frees the queue lock as Celery's does; an enqueuer that died in the window leaves the lock
to its TTL.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.utils import timezone

from ..backends import get_backend
from ..conf import conf
from ..exceptions import DuplicateTask, LockError, shown
from ..values.holder import Holder
from .django_tasks import FRAMEWORKS, locked_function
from .uniqueness import WHILE_EXECUTING, QueueLock, queue_name

logger = logging.getLogger("tasklock")

#: a queue lock whose task id starts with this is taken by an enqueue still in progress
PENDING = "tasklock-enqueuing:"
#: how long a worker's start or a duplicate waits for an enqueue in progress to name its result
ENQUEUE_GRACE = 5.0
#: the pause between two looks at a pending queue lock
ENQUEUE_POLL = 0.005


def _pending(holder: Holder | None) -> bool:
    return holder is not None and (holder.task_id or "").startswith(PENDING)


def await_enqueued(name: str, alias: str | None) -> Holder | None:
    """The holder of queue lock ``name`` once no enqueue is in progress on it (at most
    ``ENQUEUE_GRACE`` s), or the pending one if the enqueuer never finished."""
    backend = get_backend(alias)
    key = backend.key(name)
    give_up = time.monotonic() + ENQUEUE_GRACE
    while True:
        try:
            holder = Holder.decode(backend.get(key))
        except backend.errors as exc:
            raise backend.failure(alias or conf.CACHE, f"reading queue lock {shown(name)}", exc, key) from exc
        if not _pending(holder) or time.monotonic() > give_up:
            return holder
        time.sleep(ENQUEUE_POLL)


def _name_result(queued: QueueLock, result_id: str) -> bool:
    """Rename ``queued`` from its pending id to ``result_id`` (owner-checked). False if it was
    gone (expired, or cleared meanwhile)."""
    holder = Holder.decode(queued.value)
    assert holder is not None  # QueueLock wrote it
    named = dataclasses.replace(holder, task_id=result_id).encode()
    try:
        renamed = queued.backend.replace_if(queued.key, queued.value, named, queued.timeout)
    except queued.backend.errors as exc:
        raise queued.backend.failure(queued.alias, f"naming queue lock {shown(queued.name)}", exc) from exc
    queued.value = named
    return bool(renamed)


def _waits(task: Any) -> float:
    """How long ``task`` (its ``run_after``) waits before it may run, in seconds."""
    if task.run_after is None:
        return 0.0
    return max((task.run_after - timezone.now()).total_seconds(), 0.0)


def enqueue_unique(task: Any, args: tuple, kwargs: dict) -> Any:
    """Enqueue ``task`` unless a copy with the same lock name is queued or running: then its
    task result (``on_duplicate="existing"``) or ``DuplicateTask``."""
    backend = task.get_backend()
    wrapper = locked_function(task)
    spec = getattr(wrapper, "tasklock", None)
    if wrapper is None or spec is None or spec.unique == WHILE_EXECUTING:
        return backend.enqueue(task, args, kwargs)
    context = (None,) if task.takes_context else ()  # the worker passes a TaskContext first
    name = wrapper.tasklock_name(None, (*context, *args), kwargs, task.takes_context)  # type: ignore[attr-defined]
    timeout = (spec.timeout or conf.TIMEOUT) + _waits(task)
    pending = PENDING + os.urandom(16).hex()
    queued = QueueLock(queue_name(name, spec.unique), spec.cache, timeout, task.module_path, pending)
    taken, holder = queued.take()
    if not taken:
        if _pending(holder):
            holder = await_enqueued(queued.name, spec.cache)
        existing = None if holder is None or _pending(holder) else holder.task_id
        if spec.on_duplicate == "existing" and existing is not None and backend.supports_get_result:
            return backend.get_result(existing)
        raise DuplicateTask(
            f"{task.module_path} is already queued or running under lock {shown(queued.name)}"
            + (f" (task result {existing})" if existing else " (held by no task result)"),
            existing,
        )
    try:
        result = backend.enqueue(task, args, kwargs)
    except BaseException:
        try:
            queued.free()
        except LockError:
            logger.warning(
                "enqueue of %s failed; queue lock left to its TTL", task.module_path, exc_info=True
            )
        raise
    _name_result(queued, str(result.id))
    return result


if FRAMEWORKS:  # a subclass of the installed framework's Task (Django's own first)

    class UniqueTask(FRAMEWORKS[0].base.Task):  # type: ignore[misc,name-defined]
        """A Django task whose ``enqueue`` refuses duplicates (``task_lock(unique=...)``)."""

        __slots__ = ()

        #: what ``task_lock(unique=...)`` looks for: this task's ``enqueue`` takes queue locks
        takes_queue_locks = True

        def enqueue(self, *args: Any, **kwargs: Any) -> Any:
            return enqueue_unique(self, args, kwargs)

        async def aenqueue(self, *args: Any, **kwargs: Any) -> Any:
            return await sync_to_async(enqueue_unique)(self, args, kwargs)


def unique_task(function: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Django's ``@task()`` (the same options) making a ``UniqueTask``, for a function whose
    ``task_lock`` has ``unique=`` other than ``"while_executing"``."""
    if not FRAMEWORKS:
        raise ImportError("unique_task needs Django 6's django.tasks or the django-tasks backport")
    if "run_after" in options:
        raise TypeError("run_after cannot be set at decoration; use .using(run_after=...)")
    alias = options.get("backend", "default")
    task_class = FRAMEWORKS[0].task_backends[alias].task_class
    if not issubclass(UniqueTask, task_class):
        raise TypeError(
            f"unique_task cannot make tasks of task backend {alias!r} refuse duplicates: its task "
            f"class is {task_class.__qualname__}, and tasklock's UniqueTask extends "
            f"{UniqueTask.__mro__[1].__module__}.{UniqueTask.__mro__[1].__qualname__}"
        )

    def wrap(func: Callable[..., Any]) -> Any:
        return UniqueTask(func=func, **options)

    return wrap(function) if function is not None else wrap
