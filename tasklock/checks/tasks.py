"""System checks of the locked Celery tasks, after importing the task modules as a worker
would: time limits against lock timeouts (W003), ``unique=`` without ``UniqueTask`` (E004),
retries and ``acks_late`` runs against the broker's visibility timeout (W008)."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from celery import Celery, current_app
from django.core.checks import CheckMessage, Error, Warning

from ..integrations.decorator import RETRY_JITTER, LockSpec
from ..integrations.unique_task import UniqueTask
from .configured import setting

#: kombu's Redis transport redelivers an unacknowledged message after this many seconds
DEFAULT_VISIBILITY_TIMEOUT = 3600


#: True while check_time_limits imports the task modules: Celery's Django fixup runs the
#: system checks again from inside that import, and this check must not recurse into it
_importing_tasks: ContextVar[bool] = ContextVar("tasklock_importing_tasks", default=False)


def time_limit_warnings(app: Celery) -> list[CheckMessage]:
    """tasklock.W003 for each of ``app``'s non-renewing locked tasks whose time limits outlast
    its lock."""
    default_timeout = setting("TIMEOUT")
    found: list[CheckMessage] = []
    for name, task in sorted(app.tasks.items()):
        spec = getattr(task.run, "tasklock", None)  # a bound method shows its function's attributes
        if not isinstance(spec, LockSpec) or spec.renew:
            continue  # a renewing lock lives as long as its body
        timeout = spec.timeout or default_timeout
        if timeout is None:
            continue
        limits = {
            "time_limit": task.time_limit if task.time_limit is not None else app.conf.task_time_limit,
            "soft_time_limit": (
                task.soft_time_limit if task.soft_time_limit is not None else app.conf.task_soft_time_limit
            ),
        }
        over = {what: limit for what, limit in limits.items() if limit is not None and limit > timeout}
        if over:
            runs = " / ".join(f"{limit:g} s ({what})" for what, limit in over.items())
            enough = max(over.values())
            found.append(
                Warning(
                    f"{name} may run for {runs}, longer than its lock's timeout of {timeout:g} s: the lock "
                    "can expire while the body still runs, and another worker then runs it too.",
                    hint=f"Give its task_lock a timeout of at least {enough:g} s, or lower the limit.",
                    obj=name,
                    id="tasklock.W003",
                )
            )
    return found


def _task_modules_problem(app: Celery, check_id: str | None, why: str = "") -> list[CheckMessage] | None:
    """Import the task modules as a worker would (``manage.py check`` alone imports none of
    them); None when the tasks are there to check. Else what to report instead: a warning
    ``check_id`` if the import fails (W003 reports it; the other task checks pass None and
    stay silent), [] inside the check run that Celery's Django fixup starts from that import."""
    if _importing_tasks.get():
        return []  # the outer call reports
    importing = _importing_tasks.set(True)
    try:
        # `include`/`imports` and autodiscover_tasks()
        app.loader.import_default_modules()
    except Exception as exc:  # whatever a task module raises on import: report it, do not crash
        if check_id is None:
            return []
        return [
            Warning(
                f"tasklock could not import the Celery task modules to {why}: {exc!r}.",
                hint="Fix the import error; the worker will hit it too.",
                obj=app.main,
                id=check_id,
            )
        ]
    finally:
        _importing_tasks.reset(importing)
    return None


def check_time_limits(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """tasklock.W003, after importing the task modules as a worker would."""
    app = current_app._get_current_object()
    problem = _task_modules_problem(app, "tasklock.W003", "compare time limits with lock timeouts")
    return time_limit_warnings(app) if problem is None else problem


def unique_base_errors(app: Celery) -> list[CheckMessage]:
    """tasklock.E004 for each task whose ``task_lock(unique=...)`` needs ``UniqueTask``."""
    found: list[CheckMessage] = []
    for name, task in sorted(app.tasks.items()):
        spec = getattr(task.run, "tasklock", None)
        unique = getattr(spec, "unique", "while_executing")
        if isinstance(spec, LockSpec) and unique != "while_executing" and not isinstance(task, UniqueTask):
            found.append(
                Error(
                    f'{name} has task_lock(unique="{spec.unique}") but its base is not '
                    "tasklock.celery.UniqueTask: nothing would take its queue lock at publish time.",
                    hint="Declare it with @app.task(base=UniqueTask, ...) "
                    "(from tasklock.celery import UniqueTask), or drop unique=.",
                    obj=name,
                    id="tasklock.E004",
                )
            )
    return found


def check_unique_tasks(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """tasklock.E004, after importing the task modules as a worker would."""
    app = current_app._get_current_object()
    problem = _task_modules_problem(app, None)
    return unique_base_errors(app) if problem is None else problem


def visibility_timeout_warnings(app: Celery) -> list[CheckMessage]:
    """tasklock.W008 for each locked task whose retry countdown or ``acks_late`` run can outlast
    the Redis broker's ``visibility_timeout`` (the message is then delivered again)."""
    broker = str(app.conf.broker_url or "")
    if not broker.startswith(("redis://", "rediss://", "redis+socket://", "sentinel://")):
        return []
    options = app.conf.broker_transport_options or {}
    visibility = float(options.get("visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT))
    found: list[CheckMessage] = []
    for name, task in sorted(app.tasks.items()):
        spec = getattr(task.run, "tasklock", None)
        if not isinstance(spec, LockSpec):
            continue
        reasons = []
        countdown = spec.countdown if spec.countdown is not None else task.default_retry_delay
        if countdown is not None and countdown * (1 + RETRY_JITTER) > visibility:
            reasons.append(f"its retry countdown of up to {countdown * (1 + RETRY_JITTER):g} s")
        acks_late = task.acks_late if task.acks_late is not None else app.conf.task_acks_late
        limit = task.time_limit if task.time_limit is not None else app.conf.task_time_limit
        if acks_late and (limit is None or limit > visibility):
            run = "no time limit" if limit is None else f"a time limit of {limit:g} s"
            reasons.append(f"its acks_late run ({run})")
        if reasons:
            found.append(
                Warning(
                    f"{name}: {' and '.join(reasons)} can outlast the Redis broker's visibility_timeout "
                    f"of {visibility:g} s; the broker then delivers the message again and copies with "
                    "the same task id run at once (the lock keeps them apart; the copies are retried).",
                    hint="Raise broker_transport_options['visibility_timeout'] above the longest "
                    "countdown, ETA or acks_late run, or shorten those.",
                    obj=name,
                    id="tasklock.W008",
                )
            )
    return found


def check_visibility_timeout(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """tasklock.W008 (deploy), after importing the task modules as a worker would."""
    app = current_app._get_current_object()
    problem = _task_modules_problem(app, None)
    return visibility_timeout_warnings(app) if problem is None else problem
