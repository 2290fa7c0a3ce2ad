"""``task_lock``: run a Celery task (or a plain function) only while holding its lock."""

from __future__ import annotations

import functools
import inspect
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, ParamSpec, TypeVar

from celery import Task
from celery.exceptions import Retry
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ..backends import family_of
from ..core.arguments import cache_alias, holder_limit, seconds
from ..core.lock import MIN_RENEWED_TIMEOUT, Lock
from ..core.running import NOTHING, Running
from ..core.running import task as running_task_var
from ..exceptions import LockError, LockNotAcquired, shown
from ..signals import lock_contended
from .async_task_lock import locked_coroutine
from .celery_bodies import MAX_UNWRAP, TaskBody, running_task
from .django_tasks import DEFAULT_RETRY_DELAY, DjangoCall, django_call
from .django_unique import await_enqueued
from .holding import SKIPPED
from .holding import holding as _holding
from .naming import KeySpec, NameBuilder
from .uniqueness import (
    MODES,
    ON_DUPLICATE,
    UNTIL_AND_WHILE_EXECUTING,
    UNTIL_EXECUTED,
    UNTIL_EXECUTING,
    WHILE_EXECUTING,
    Mode,
    OnDuplicate,
    claim,
    free_queued,
    hand_over,
    is_queued,
    queue_name,
    require_unique_base,
)

logger = logging.getLogger("tasklock")

Policy = Literal["skip", "retry", "raise", "wait"]
POLICIES = ("skip", "retry", "raise", "wait")
#: a retry's countdown is spread by this fraction either way, so contenders do not stampede
RETRY_JITTER = 0.25

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class LockSpec:
    """What ``task_lock`` was given; kept on the wrapper as ``wrapper.tasklock``."""

    key: KeySpec
    timeout: float | None
    on_locked: Policy | None
    countdown: float | None
    wait: float | None
    cache: str | None
    renew: bool = True
    unique: Mode = WHILE_EXECUTING
    on_duplicate: OnDuplicate = "existing"
    fair: bool = False
    limit: int = 1


def _non_negative(value: object, what: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < math.inf:
        raise ValueError(f"task_lock {what} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def _polling_backend(cache: str | None) -> str | None:
    """The backend class name of cache ``cache`` (None: ``TASKLOCK["CACHE"]``) when the
    settings show that its waiters poll (no line to serve in order, so no ``fair=``); None
    otherwise, or when they cannot tell yet (the lock's first call then says what is wrong)."""
    if not settings.configured:
        return None
    try:
        config = settings.CACHES.get(cache_alias(cache))
        backend = None if config is None else import_string(config.get("BACKEND", ""))
        family = None if backend is None else family_of(backend)
    except (ImportError, ImproperlyConfigured):
        return None
    return backend.__name__ if backend is not None and family not in (None, "redis") else None


def _run_by_worker(task: Task) -> bool:
    return not task.request.called_directly and not task.request.is_eager


def _not_retried(task: Task, running: bool) -> str:
    if running and task.request.is_eager:
        return f"{task.name} runs eagerly (apply() or task_always_eager), so nothing can retry it later"
    return f"{task.name} was called directly, not by a worker, so nothing can retry it later"


def _locked_run(task: Task) -> Any:
    """The ``task_lock`` wrapper that is ``task``'s body, or None."""
    run = getattr(type(task), "run", None)
    for _ in range(MAX_UNWRAP):  # through autoretry_for and other wrappers, as TaskBody does
        if run is None or isinstance(getattr(run, "tasklock", None), LockSpec):
            break
        run = getattr(run, "__wrapped__", None)
    return run if isinstance(getattr(run, "tasklock", None), LockSpec) else None


def spec_of(task: Task) -> LockSpec | None:
    """The ``task_lock`` spec of ``task``'s body, or None."""
    run = _locked_run(task)
    return None if run is None else run.tasklock


def lock_name_of_call(task: Task, args: tuple, kwargs: dict) -> tuple[str, str | None] | None:
    """The (run) lock name and cache alias that ``task`` called with ``args``/``kwargs`` (as its
    request carries them, without ``self``) locks; None if it has no ``task_lock``."""
    run = _locked_run(task)
    if run is None:
        return None
    spec = run.tasklock
    bound = not isinstance(inspect.getattr_static(type(task), "run"), staticmethod)
    return run.tasklock_name(task, (task, *args) if bound else args, kwargs, bound), spec.cache  # type: ignore[union-attr]


def task_lock(
    key: KeySpec = None,
    *,
    timeout: float | None = None,
    on_locked: Policy | None = None,
    countdown: float | None = None,
    wait: float | None = None,
    cache: str | None = None,
    renew: bool = True,
    unique: Mode = WHILE_EXECUTING,
    on_duplicate: OnDuplicate | None = None,
    fair: bool = False,
    limit: int = 1,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Hold a lock named from the task and its arguments while the body runs.

    Put it below ``@app.task``. When the lock is held: ``skip`` returns ``SKIPPED``,
    ``retry`` calls ``task.retry`` (with jitter), ``raise`` raises ``LockNotAcquired``,
    ``wait`` blocks up to ``wait`` seconds first. The default is ``retry`` in a worker and
    ``raise`` elsewhere, so work is never dropped silently. A call that no worker runs
    (``task(...)``, ``run()``, ``apply()``) cannot be retried later: ``retry`` raises
    ``LockNotAcquired`` there. ``retry`` on a plain function raises ``TypeError`` at its
    first call (at decoration the function is not a task yet: ``@app.task`` comes after).

    ``unique`` (with ``base=tasklock.celery.UniqueTask``) also locks at publish time:
    ``until_executing``, ``until_executed``, ``until_and_while_executing``; a duplicate
    publish returns the existing task's result (``on_duplicate="existing"``, the default) or
    raises ``DuplicateTask``. ``fair`` serves ``wait``-ers in arrival order (Redis caches only).
    ``limit=N`` lets up to N calls with one lock name run at once (each holds its own slot).
    """
    if unique not in MODES:
        raise ValueError(f"task_lock unique must be one of {MODES}, got {unique!r}")
    if on_duplicate is not None and on_duplicate not in ON_DUPLICATE:
        raise ValueError(f"task_lock on_duplicate must be one of {ON_DUPLICATE}, got {on_duplicate!r}")
    if on_duplicate is not None and unique == WHILE_EXECUTING:
        raise ValueError(
            f"task_lock on_duplicate={on_duplicate!r} only applies to a unique= mode that locks at "
            f'publish time ({", ".join(repr(mode) for mode in MODES[1:])}); with unique="{WHILE_EXECUTING}" '
            "(the default) nothing is refused at publish"
        )
    if on_locked is not None and on_locked not in POLICIES:
        raise ValueError(f"task_lock on_locked must be one of {POLICIES} or None, got {on_locked!r}")
    limit = holder_limit(limit)
    if limit > 1 and unique != WHILE_EXECUTING:
        raise ValueError(
            f'task_lock limit={limit} needs unique="{WHILE_EXECUTING}" (the default): a unique= mode '
            f"keeps one queued or running copy per name, which contradicts {limit} at once"
        )
    if wait is not None and on_locked != "wait":
        raise ValueError('task_lock wait= only applies to on_locked="wait"')
    spec = LockSpec(
        key=key,
        timeout=None if timeout is None else seconds(timeout, "task_lock timeout"),
        on_locked=on_locked,
        countdown=_non_negative(countdown, "countdown"),
        wait=_non_negative(wait, "wait"),
        cache=cache,
        renew=renew,
        unique=unique,
        on_duplicate=on_duplicate or "existing",
        fair=fair,
        limit=limit,
    )
    if not isinstance(fair, bool):
        raise ValueError(f"task_lock fair must be True or False, got {fair!r}")
    if fair and (backend := _polling_backend(cache)):
        raise ValueError(
            f"task_lock fair=True needs a Redis lock cache (waiters served in line); cache "
            f"{cache_alias(cache)!r} ({backend}) has its waiters poll, which keeps no order"
        )
    if not isinstance(renew, bool):
        raise ValueError(f"task_lock renew must be True or False, got {renew!r}")
    if renew and spec.timeout is not None and spec.timeout < MIN_RENEWED_TIMEOUT:
        raise ValueError(
            f"task_lock renews its lock every third of its timeout: give it a timeout of at least "
            f"{MIN_RENEWED_TIMEOUT} s, or renew=False (got {spec.timeout!r})"
        )

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        if isinstance(fn, Task):
            raise TypeError("put @task_lock below @app.task / @shared_task, on the function")
        signature = inspect.signature(fn)
        names = NameBuilder(key, signature)
        first_parameter = next(iter(signature.parameters), None)
        plain_name = f"{fn.__module__}.{fn.__qualname__}"

        def lock_name(task: Task | None, args: tuple, kwargs: dict, bound: bool) -> str:
            arguments = names.bind(args, kwargs)
            if bound:
                del arguments[first_parameter]  # type: ignore[arg-type]
            own_args = args[1:] if bound else args
            return names.name(plain_name if task is None else task.name, arguments, own_args, kwargs)

        if inspect.iscoroutinefunction(fn):  # an async def: the lock is taken asynchronously
            return locked_coroutine(fn, spec, lock_name)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            current = running_task()
            task, running = body.find(args, current)
            django = django_call(wrapper) if task is None else None  # a Django task's function?
            if task is None and django is None and on_locked == "retry":
                raise TypeError(
                    f'task_lock(on_locked="retry") needs a task, and {fn.__qualname__} is a plain '
                    "function (no Celery or Django task has it as its body); use @app.task or "
                    "@task() above @task_lock, or another policy"
                )
            if unique != WHILE_EXECUTING and django is not None:
                django.require_unique(unique)
            elif unique != WHILE_EXECUTING:
                require_unique_base(task, unique, fn.__qualname__)
            bound = task is not None and bool(args) and args[0] is task
            bound = bound or (django is not None and django.task.takes_context)  # no TaskContext
            name = lock_name(task, args, kwargs, bound)
            task_id = task.request.id if running and task is not None else None
            if running:
                who = Running(task.name, task_id)  # type: ignore[union-attr]
            elif django is not None and django.result is not None:
                task_id = django.result_id
                who = Running(django.module_path, task_id)
            else:  # a plain function, or a task called as one: in whatever task runs now
                who = running_task_var.get() or NOTHING
                who = who if current is None else Running(current.name, current.request.id)
            if django is not None and task_id and unique != WHILE_EXECUTING:
                await_enqueued(queue_name(name, unique), cache)  # its enqueue names its queue lock
            told = running_task_var.set(who)  # the locks taken in the call name the task
            try:
                return _call(fn, args, kwargs, name, task, running, task_id, django)
            finally:
                running_task_var.reset(told)

        body = TaskBody(wrapper)
        wrapper.__signature__ = signature  # type: ignore[attr-defined]
        wrapper.tasklock = spec  # type: ignore[attr-defined]
        wrapper.tasklock_name = lock_name  # type: ignore[attr-defined]
        return wrapper

    def _call(
        fn: Callable[P, R],
        args: tuple,
        kwargs: dict,
        name: str,
        task: Task | None,
        running: bool,
        task_id: str | None,
        django: DjangoCall | None,
    ) -> R:
        """Run ``fn`` holding its lock; or what the policy says when the lock is held."""
        if unique == UNTIL_EXECUTING:
            if task_id:  # the queue lock goes as the body starts; the body runs unlocked
                free_queued(name, cache, task_id)
            return fn(*args, **kwargs)
        held = Lock(name, spec.timeout, cache, renew=spec.renew, fair=fair, limit=spec.limit)
        if not _take(held, task_id):
            return _contended(held.name, task, running, task_id, django)
        holding = _holding.set(held)
        retried = False
        try:
            return fn(*args, **kwargs)
        except Retry:
            retried = True
            raise
        except BaseException as exc:  # autoretry_for retries after the body: requeue now
            requeue = getattr(task, "_requeue_for_autoretry", None) if unique == UNTIL_EXECUTED else None
            retried = bool(task_id) and requeue is not None and requeue(held, exc)
            raise
        finally:
            _holding.reset(holding)
            if not (retried and is_queued(held)):  # requeued for its retry: the retry claims it
                held.release_quietly()

    def _take(held: Lock, task_id: str | None) -> bool:
        """Take the run lock: a unique task's start converts its own queue lock."""
        tried = bool(task_id) and unique != WHILE_EXECUTING
        if not tried and on_locked != "wait":
            return held.acquire()
        queue = queue_name(held.name, unique)
        own = task_id or ""
        if tried and (claim(held, own) if unique == UNTIL_EXECUTED else hand_over(held, queue, own)):
            return True
        if on_locked == "wait":
            limit = held.timeout if spec.wait is None else spec.wait
            acquired = held.acquire(blocking=True, wait=limit)
            if acquired and tried and unique == UNTIL_AND_WHILE_EXECUTING:
                free_queued(queue, cache, own)
            return acquired
        return not tried and held.acquire()

    def _contended(
        name: str, task: Task | None, running: bool, task_id: str | None, django: DjangoCall | None
    ) -> Any:
        worker = running and task is not None and _run_by_worker(task)
        unretried = None if django is None else django.cannot_retry()
        worker = worker or (django is not None and unretried is None)
        policy = on_locked
        if policy in (None, "wait", "retry"):
            policy = "retry" if worker else "raise"
        lock_contended.send_robust(sender=Lock, name=name, policy=policy, task_id=task_id)
        logger.info("lock %s is held; policy %s", shown(name), policy)
        if policy != "retry" or task is None:
            _drop_queue_lock(name, task_id)
        if policy == "skip":
            return SKIPPED
        if policy == "raise" or (task is None and django is None):
            why = "" if task is None or on_locked == "raise" else f"; {_not_retried(task, running)}"
            why = f"; {unretried}" if unretried and on_locked != "raise" else why
            raise LockNotAcquired(f"lock {shown(name)} is held by someone else{why}")
        if django is not None:  # re-enqueued with run_after; this attempt ends with what it says
            delay = DEFAULT_RETRY_DELAY if countdown is None else countdown
            return django.retry(delay * random.uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER))
        delay = task.default_retry_delay if countdown is None else countdown
        try:
            raise task.retry(countdown=delay * random.uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER))
        except Retry:
            raise  # the retry (same task id) hands its queue lock over when it runs
        except BaseException:  # retries exhausted: this task will not run
            _drop_queue_lock(name, task_id)
            raise

    def _drop_queue_lock(name: str, task_id: str | None) -> None:
        """Free the queue lock of an ``until_and_while_executing`` task that will not run its
        body (skipped, raised, out of retries), only if it still names ``task_id``; the run
        lock it did not get is someone else's. Other modes' queue locks are their run locks."""
        if not task_id or unique != UNTIL_AND_WHILE_EXECUTING:
            return
        try:
            free_queued(queue_name(name, unique), cache, task_id)
        except LockError:
            logger.warning("queue lock of task %s left to its TTL", task_id, exc_info=True)

    return decorate
