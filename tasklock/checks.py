"""System checks: refuse a lock cache whose ``add`` is no lock, and catch the other traps early.

``TaskLockConfig.ready()`` registers them. None of them raises on a bad ``TASKLOCK``: that is
reported once, as ``tasklock.E003``, and the checks that need the bad value stay silent.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from typing import Any, NamedTuple

from celery import Celery, current_app
from django.conf import settings
from django.core.cache import caches
from django.core.checks import CheckMessage, Error, Warning
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from .backends import SAFE_CHOICES, UNSAFE_FAMILIES, dotted_path, family_of, how_to_trust
from .conf import DEFAULTS, FAMILIES, conf, problems
from .decorators import LockSpec

DJANGO_REDIS = "django_redis.cache.RedisCache"
#: kombu's Redis transport redelivers an unacknowledged message after this many seconds
DEFAULT_VISIBILITY_TIMEOUT = 3600

#: True while check_time_limits imports the task modules: Celery's Django fixup runs the
#: system checks again from inside that import, and this check must not recurse into it
_importing_tasks: ContextVar[bool] = ContextVar("tasklock_importing_tasks", default=False)


class LockCache(NamedTuple):
    """The cache that holds the locks, as configured."""

    alias: str
    config: dict[str, Any]
    backend: type
    family: str | None


def _setting(name: str) -> Any:
    """``conf.<name>``, or None when the value is invalid (``tasklock.E003`` reports it)."""
    try:
        return getattr(conf, name)
    except ImproperlyConfigured:
        return None


def _lock_cache() -> LockCache | list[CheckMessage]:
    """The lock cache, or what stops tasklock from knowing it (empty when E003 covers it)."""
    alias = _setting("CACHE")
    if alias is None:
        return []
    config = settings.CACHES.get(alias)
    if config is None:
        aliases = ", ".join(settings.CACHES)
        return [
            Error(
                f"TASKLOCK['CACHE'] is {alias!r}, which is not an alias in CACHES.",
                hint=f"Add {alias!r} to CACHES or set TASKLOCK['CACHE'] to one of: {aliases}.",
                obj="TASKLOCK",
                id="tasklock.E001",
            )
        ]
    try:
        backend = import_string(config.get("BACKEND", ""))
    except ImportError as exc:
        return [
            Warning(
                f"tasklock cannot tell whether the lock cache's add() is atomic: its BACKEND "
                f"{config.get('BACKEND')!r} does not import ({exc}).",
                hint="Fix CACHES[...]['BACKEND'] to a cache backend class's dotted path.",
                obj=f"CACHES[{alias!r}]",
                id="tasklock.W002",
            )
        ]
    try:
        family = family_of(backend)
    except ImproperlyConfigured:  # TRUSTED_BACKENDS is invalid: E003
        return []
    return LockCache(alias, config, backend, family)


def memcached_servers(config: dict[str, Any]) -> list[str]:
    """The servers in a memcached cache's LOCATION, split as Django splits them."""
    location = config.get("LOCATION", "")
    servers = re.split("[;,]", location) if isinstance(location, str) else list(location)
    return [server.strip() for server in servers if server.strip()]


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """tasklock.E003: unknown keys, wrong types or non-positive timeouts in ``TASKLOCK``, or
    ``REPLICAS`` for a lock cache that has no replicas to confirm an acquire."""
    return [
        Error(
            problem,
            hint=(
                f"TASKLOCK takes {', '.join(DEFAULTS)}; TIMEOUT is seconds in (0, 365 days]; "
                f"TRUSTED_BACKENDS maps dotted backend paths to {' / '.join(FAMILIES)}."
            ),
            obj="TASKLOCK",
            id="tasklock.E003",
        )
        for problem in problems(getattr(settings, "TASKLOCK", {}))
    ] + _replicas_ignored()


def _replicas_ignored() -> list[CheckMessage]:
    """tasklock.E003 when ``REPLICAS`` asks memcached or the database cache for confirmations:
    only Redis has ``WAIT``, so the setting would do nothing there."""
    replicas = _setting("REPLICAS")
    found = _lock_cache() if replicas else []
    if isinstance(found, list) or found.family not in ("memcached", "database"):
        return []  # Redis confirms; an unsafe or unknown cache has its own message
    return [
        Error(
            f"TASKLOCK['REPLICAS'] is {replicas}, but the lock cache {found.alias!r} is {found.family}, "
            "which has no replicas to confirm an acquire (only Redis's WAIT does): the setting would be "
            "ignored and no acquire confirmed.",
            hint="Set TASKLOCK['REPLICAS'] to 0 for this cache, or lock on Redis.",
            obj="TASKLOCK",
            id="tasklock.E003",
        )
    ]


def check_lock_cache(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E001, E002, W001, W002, W006, W007: can the lock cache's ``add`` be a lock at all?"""
    found = _lock_cache()
    if isinstance(found, list):
        return found
    alias, config, backend, family = found
    path = dotted_path(backend)
    where = f"CACHES[{alias!r}]"
    if family == "locmem" and _setting("ALLOW_PROCESS_LOCAL_CACHE"):
        return [
            Warning(
                f"TASKLOCK['ALLOW_PROCESS_LOCAL_CACHE'] lets tasklock lock on {path}: "
                f"{UNSAFE_FAMILIES[family]}.",
                hint=f"Fine for a single-process test suite only; deploy on {SAFE_CHOICES}.",
                obj=where,
                id="tasklock.W006",
            )
        ]
    if family in UNSAFE_FAMILIES:
        allow = " (or, for a single-process test suite, TASKLOCK['ALLOW_PROCESS_LOCAL_CACHE'] = True)"
        return [
            Error(
                f"The lock cache's add() is no lock across processes: {UNSAFE_FAMILIES[family]}.",
                hint=f"Point TASKLOCK['CACHE'] at {SAFE_CHOICES}{allow if family == 'locmem' else ''}.",
                obj=where,
                id="tasklock.E002",
            )
        ]
    if family is None:
        return [
            Warning(
                f"tasklock does not know the lock cache's backend {path}, so it cannot tell whether "
                "its add() is atomic across processes; Lock refuses it until it is declared.",
                hint=how_to_trust(path),
                obj=where,
                id="tasklock.W002",
            )
        ]
    if family == "database":
        options = config.get("OPTIONS", {})
        return [
            Warning(
                "DatabaseCache.add() races on expired rows (SELECT then UPDATE: several processes "
                "can all add), which only tasklock's own adapter avoids; and the cache culls live rows, "
                f"held locks included, once it holds more than MAX_ENTRIES "
                f"({options.get('MAX_ENTRIES', 300)}) entries.",
                hint=(
                    "Lock only through tasklock (never cache.add() on this alias), give the locks a "
                    "dedicated cache alias with MAX_ENTRIES far above the locks held at once, and keep "
                    "CULL_FREQUENCY above 0 (0 empties the table); or lock on Redis."
                ),
                obj=where,
                id="tasklock.W001",
            )
        ]
    if family == "memcached" and len(servers := memcached_servers(config)) > 1:
        return [
            Warning(
                f"The lock cache spreads keys over {len(servers)} memcached servers: when one drops out "
                "its keys move to another, where a held lock is absent and can be taken twice.",
                hint="Give the locks a cache alias with a single memcached server, or lock on Redis.",
                obj=where,
                id="tasklock.W007",
            )
        ]
    return []


def time_limit_warnings(app: Celery) -> list[CheckMessage]:
    """tasklock.W003 for each of ``app``'s non-renewing locked tasks whose time limits outlast
    its lock."""
    default_timeout = _setting("TIMEOUT")
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
    from .celery import UniqueTask

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
    from .decorators import RETRY_JITTER

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


def check_eviction_policy(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """tasklock.W004 (deploy): the lock cache's Redis may evict held locks."""
    found = _lock_cache()
    if isinstance(found, list) or found.family != "redis":
        return []
    from .backends.redis import write_client

    hint = "Set maxmemory-policy noeviction on that server (redis.conf), or give the locks their own Redis."
    where = f"CACHES[{found.alias!r}]"
    try:
        policy = write_client(caches[found.alias]).config_get("maxmemory-policy")["maxmemory-policy"]
    except Exception as exc:  # no answer, CONFIG disabled, an odd client: the check could not run
        return [
            Warning(
                f"tasklock could not ask the lock cache's Redis for its maxmemory-policy: {exc!r}.",
                hint=f"Check it by hand: CONFIG GET maxmemory-policy must answer noeviction. {hint}",
                obj=where,
                id="tasklock.W004",
            )
        ]
    if policy == "noeviction":
        return []
    return [
        Warning(
            f"The lock cache's Redis has maxmemory-policy {policy!r}: at maxmemory it can evict a held "
            "lock (lock keys have TTLs, so volatile-* evicts them too) and a second worker then gets it.",
            hint=hint,
            obj=where,
            id="tasklock.W004",
        )
    ]


def check_ignore_exceptions(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """tasklock.W005 (deploy): django-redis hides outages of the lock cache."""
    found = _lock_cache()
    if isinstance(found, list) or DJANGO_REDIS not in map(dotted_path, found.backend.__mro__):
        return []
    options = found.config.get("OPTIONS", {})
    if not options.get("IGNORE_EXCEPTIONS", getattr(settings, "DJANGO_REDIS_IGNORE_EXCEPTIONS", False)):
        return []
    return [
        Warning(
            "django-redis IGNORE_EXCEPTIONS is on for the lock cache: its cache calls answer None/False "
            "when Redis is down, so an outage looks like 'no lock held' to anything but tasklock's Lock.",
            hint=(
                "Give the locks a cache alias without IGNORE_EXCEPTIONS (OPTIONS and the "
                "DJANGO_REDIS_IGNORE_EXCEPTIONS setting)."
            ),
            obj=f"CACHES[{found.alias!r}]",
            id="tasklock.W005",
        )
    ]
