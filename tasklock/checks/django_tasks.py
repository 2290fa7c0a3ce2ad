"""System checks of the locked Django tasks (``django.tasks``; the backport on Django 5.2),
after importing each installed app's ``tasks`` module as a worker would: ``retry`` on a task
backend that cannot defer (E005), ``unique=`` on a task that cannot veto its enqueue (E004)."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import import_module
from types import ModuleType
from typing import Any

from django.apps import apps
from django.core.checks import CheckMessage, Error, Warning
from django.utils.module_loading import module_has_submodule

from ..integrations.decorator import LockSpec
from ..integrations.django_tasks import TASK_TYPES, locked_function


def _spec(task: Any) -> LockSpec | None:
    """The ``task_lock`` spec of a Django task's function, or None."""
    spec = getattr(locked_function(task), "tasklock", None)
    return spec if isinstance(spec, LockSpec) else None


def _task_modules() -> Iterator[ModuleType | CheckMessage]:
    """Each installed app's ``tasks`` module, imported; a warning for each that fails."""
    for config in apps.get_app_configs():
        if not module_has_submodule(config.module, "tasks"):
            continue
        try:
            yield import_module(f"{config.name}.tasks")
        except Exception as exc:  # whatever a task module raises on import: report it
            yield Warning(
                f"tasklock could not import {config.name}.tasks to check its Django tasks: {exc!r}.",
                hint="Fix the import error; the worker will hit it too.",
                obj=config.name,
                id="tasklock.W010",
            )


def module_problems(module: ModuleType) -> list[CheckMessage]:
    """E004 and E005 for the locked Django tasks defined at the top of ``module``."""
    found: list[CheckMessage] = []
    for value in list(vars(module).values()):
        if isinstance(value, TASK_TYPES) and (spec := _spec(value)) is not None:
            found.extend(_problems(value, spec))
    return found


def _problems(task: Any, spec: LockSpec) -> Iterator[CheckMessage]:
    path = task.module_path
    if spec.unique != "while_executing" and not getattr(task, "takes_queue_locks", False):
        yield Error(
            f'{path} has task_lock(unique="{spec.unique}") but is a {type(task).__qualname__}: '
            "nothing would take its queue lock at enqueue.",
            hint="Declare it with @unique_task() (from tasklock.django_tasks import unique_task) "
            "instead of @task(), or drop unique=.",
            obj=path,
            id="tasklock.E004",
        )
    if spec.on_locked != "retry":
        return
    try:
        backend = task.get_backend()
    except Exception:  # an unknown backend alias: Django's own checks report it
        return
    if not backend.supports_defer:
        yield Error(
            f'{path} has task_lock(on_locked="retry"), but its task backend {task.backend!r} '
            f"({type(backend).__name__}) cannot defer a task (supports_defer is False): a retry "
            "could not be enqueued to run later, so every contended run would fail.",
            hint='Run it on a backend that supports deferred tasks, or use on_locked="raise" / "skip".',
            obj=path,
            id="tasklock.E005",
        )


def check_django_tasks(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """tasklock.E004 and E005 for the locked Django tasks in the installed apps' ``tasks``
    modules (where Django tasks live by convention; ``manage.py check`` alone imports none)."""
    if not TASK_TYPES:
        return []
    found: list[CheckMessage] = []
    for module in _task_modules():
        found.extend(module_problems(module) if isinstance(module, ModuleType) else [module])
    return found
