"""Django's Tasks framework (``django.tasks``; the ``django-tasks`` backport on Django 5.2):
which Django task a ``task_lock`` body runs as, and its retry by re-enqueueing.

A worker (``django-tasks-db``'s ``db_worker``, django-tasks-rq, ...) sends ``task_started`` with
the task result before it calls the task's function and ``task_finished`` after;
``django_worker`` keeps that result in ``started`` for the call. So ``task_lock`` finds the
Django task it runs as from the signal, not from a ``TaskContext`` (which only
``takes_context`` tasks get); a call outside any worker finds its task by the function's
module path, as Django itself does when it rebuilds a task.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from importlib import import_module
from types import ModuleType
from typing import Any

from django.utils import timezone

from .celery_bodies import MAX_UNWRAP


def _frameworks() -> list[ModuleType]:
    """The tasks frameworks installed: Django's own, the backport, or both."""
    found = []
    for name in ("django.tasks", "django_tasks"):
        try:
            module = import_module(name)
            import_module(f"{name}.signals")  # the module's ``signals``, as ``base`` is
        except ImportError:
            continue
        found.append(module)
    return found


FRAMEWORKS = _frameworks()
#: the ``Task`` classes of the installed frameworks (empty: none installed)
TASK_TYPES: tuple[type, ...] = tuple(module.base.Task for module in FRAMEWORKS)
#: a retry's countdown when ``task_lock`` has none: Celery's ``default_retry_delay``
DEFAULT_RETRY_DELAY = 180.0
#: what a retried attempt returns has this under "tasklock"
RETRIED = "retried"

#: the task result whose function runs in this context (set from ``task_started``)
started: ContextVar[Any | None] = ContextVar("tasklock_django_task", default=None)


def _runs(func: Callable[..., Any], wrapper: Callable[..., Any]) -> bool:
    """Whether ``func`` is ``wrapper``, directly or under other ``functools.wraps``."""
    for _ in range(MAX_UNWRAP):
        if func is wrapper:
            return True
        func = getattr(func, "__wrapped__", None)  # type: ignore[assignment]
        if func is None:
            return False
    return False


def locked_function(task: Any) -> Callable[..., Any] | None:
    """The ``task_lock`` wrapper that is Django task ``task``'s function (or is under it)."""
    func = task.func
    for _ in range(MAX_UNWRAP):
        if func is None or hasattr(func, "tasklock_name"):
            return func
        func = getattr(func, "__wrapped__", None)
    return None


def task_of(wrapper: Callable[..., Any]) -> Any | None:
    """The Django task whose function is ``wrapper``: the module attribute at its module path
    (where ``@task()`` put it, and where Django's workers import it from), or None."""
    found: Any = sys.modules.get(wrapper.__module__)
    for part in wrapper.__qualname__.split("."):
        found = getattr(found, part, None)
    return found if isinstance(found, TASK_TYPES) and _runs(found.func, wrapper) else None


@dataclass(frozen=True)
class DjangoCall:
    """A call of a ``task_lock`` body that is a Django task's function."""

    task: Any
    #: the task result being run by its backend; None for a call outside a worker (``call()``)
    result: Any | None

    @property
    def module_path(self) -> str:
        return self.task.module_path

    @property
    def result_id(self) -> str | None:
        return None if self.result is None else str(self.result.id)

    def cannot_retry(self) -> str | None:
        """Why nothing can re-enqueue this call; None when it can."""
        if self.result is None:
            return f"{self.module_path} was called directly, not by a worker, so nothing can retry it later"
        backend = self.task.get_backend()
        if not backend.supports_defer:
            return (
                f"{self.module_path} runs on task backend {backend.alias!r} ({type(backend).__name__}), "
                "which cannot defer a task (supports_defer is False), so it cannot be retried later "
                "(system check tasklock.E005)"
            )
        return None

    def require_unique(self, mode: str) -> None:
        """``TypeError`` unless the task is tasklock's ``UniqueTask`` (only its ``enqueue``
        takes queue locks: elsewhere ``unique=`` would silently do nothing)."""
        if not getattr(self.task, "takes_queue_locks", False):
            raise TypeError(
                f'task_lock(unique="{mode}") on {self.module_path} needs a Django task made by '
                "tasklock.django_tasks.unique_task (its enqueue takes the queue lock), but it is a "
                f"{type(self.task).__qualname__} (system check tasklock.E004)"
            )

    def retry(self, countdown: float) -> dict[str, str]:
        """Enqueue the same task with the same arguments to run ``countdown`` s from now (as a
        retry: past any enqueue-time veto); what this attempt returns: the new task result's id
        and when it runs."""
        run_after = timezone.now() + timedelta(seconds=countdown)
        task = self.task.using(run_after=run_after)
        again = task.get_backend().enqueue(task, tuple(self.result.args), dict(self.result.kwargs))
        return {"tasklock": RETRIED, "result_id": str(again.id), "run_after": run_after.isoformat()}


def django_call(wrapper: Callable[..., Any]) -> DjangoCall | None:
    """The Django task call that this call of ``wrapper`` is: the one a worker started in this
    context, or a direct call of a Django task's function; None for anything else."""
    if not TASK_TYPES:
        return None
    result = started.get()
    if result is not None and _runs(result.task.func, wrapper):
        return DjangoCall(result.task, result)
    task = task_of(wrapper)
    return None if task is None else DjangoCall(task, None)
