"""System checks of the lock cache: refuse one whose ``add`` is no lock (E001, E002, W001,
W002, W006, W007), and catch its deploy traps (W004 eviction, W005 hidden outages)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.checks import CheckMessage, Error, Warning

from ..backends import SAFE_CHOICES, UNSAFE_FAMILIES, dotted_path, how_to_trust
from ..backends.redis import write_client
from .configured import lock_cache, memcached_servers, setting

DJANGO_REDIS = "django_redis.cache.RedisCache"


def check_lock_cache(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E001, E002, W001, W002, W006, W007: can the lock cache's ``add`` be a lock at all?"""
    found = lock_cache()
    if isinstance(found, list):
        return found
    alias, config, backend, family = found
    path = dotted_path(backend)
    where = f"CACHES[{alias!r}]"
    if family == "locmem" and setting("ALLOW_PROCESS_LOCAL_CACHE"):
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


def check_eviction_policy(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """tasklock.W004 (deploy): the lock cache's Redis may evict held locks."""
    found = lock_cache()
    if isinstance(found, list) or found.family != "redis":
        return []
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
    found = lock_cache()
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
