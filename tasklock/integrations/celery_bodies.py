"""Which Celery task a ``task_lock`` wrapper is the body of, however Celery wraps ``run``.

Celery keeps the decorated function as the task class's ``run`` (a ``staticmethod`` without
``bind=True``); ``autoretry_for`` and similar options only replace ``run`` on the instance.
So the class attribute, followed through ``__wrapped__``, is a reliable mark of ownership,
and the decorator needs no source reading to tell a task from a plain function.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from celery import Task
from celery._state import _get_active_apps, _task_stack
from celery.utils.threads import Local

#: how many ``__wrapped__`` links to follow from a task's ``run`` to a task_lock wrapper
MAX_UNWRAP = 16

#: Celery's per-thread task stacks (a ``Local`` keyed by thread or greenlet), when its
#: ``current_task`` is built that way; a context that runs no task has no entry
_stacks = getattr(_task_stack, "_local", None)
if not isinstance(_stacks, Local):  # pragma: no cover - USE_FAST_LOCALS, or another Celery
    _stacks = None


def running_task() -> Task | None:
    """Celery's ``current_task``: the task running in this thread, or None. Asking the stack
    for its top raises and catches two exceptions when no task runs; this looks first."""
    if _stacks is not None and _stacks.__ident_func__() not in _stacks.__storage__:
        return None
    return _task_stack.top


def is_body(task: Task, wrapper: Callable[..., Any]) -> bool:
    """Whether ``wrapper`` is ``task``'s body, directly or under other ``functools.wraps``."""
    run = getattr(type(task), "run", None)
    for _ in range(MAX_UNWRAP):
        if run is wrapper:
            return True
        run = getattr(run, "__wrapped__", None)
        if run is None:
            return False
    return False


class _Registries:
    """The task registries of every Celery app; their total size tells when tasks were added.

    Cheap enough for every call of a plain function: the apps' WeakSet is copied (to weak
    references, so no app is kept alive) only when apps come or go."""

    def __init__(self) -> None:
        self.apps: tuple[weakref.ref[Any], ...] = ()
        self.app_count = -1

    def _live(self) -> list[Any]:
        active = _get_active_apps()
        if len(active) != self.app_count:
            self.apps, self.app_count = tuple(weakref.ref(app) for app in list(active)), len(active)
        return [app for ref in self.apps if (app := ref()) is not None]

    def size(self) -> int:
        """How many tasks the apps have; this runs on every call of a plain function."""
        return sum([len(app._tasks) for app in self._live()])

    def tasks(self) -> list[Task]:
        return [task for app in self._live() for task in list(app._tasks.values())]


_registries = _Registries()


class TaskBody:
    """Finds the task a wrapper belongs to: the running task, or one registered with it."""

    __slots__ = ("_searched", "_task", "wrapper")

    def __init__(self, wrapper: Callable[..., Any]) -> None:
        self.wrapper = wrapper
        self._task: Task | None = None
        self._searched = -1

    def find(self, args: tuple, current: Task | None) -> tuple[Task | None, bool]:
        """``(task, running)``, given the ``running_task()`` of this thread: ``running`` when
        this call is the task's own execution (by a worker, ``apply()`` or ``task(...)``); else
        ``task`` is the owner called through ``run()`` or as the bare function, or None for a
        plain function."""
        if current is not None and is_body(current, self.wrapper):
            return current, True
        return self._owner(args), False

    def _owner(self, args: tuple) -> Task | None:
        if self._task is not None:
            return self._task
        if args and isinstance(args[0], Task) and is_body(args[0], self.wrapper):
            self._task = args[0]  # a bind=True task's run(...), called as a bound method
            return self._task
        size = _registries.size()
        if size != self._searched:  # a plain function searches again only after new tasks
            self._searched = size
            self._task = next((t for t in _registries.tasks() if is_body(t, self.wrapper)), None)
        return self._task
