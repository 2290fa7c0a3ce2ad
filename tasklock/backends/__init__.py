"""Which adapter serves a cache: picked from the backend class (subclasses included)."""

from __future__ import annotations

import importlib
import os
import threading
from typing import Any

from django.core.cache import InvalidCacheBackendError, caches
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from ..conf import conf
from ..exceptions import LockError
from .base import LockBackend

#: backend classes tasklock knows, by dotted path, with their family
KNOWN_BACKENDS = {
    "django_redis.cache.RedisCache": "redis",
    "django.core.cache.backends.redis.RedisCache": "redis",
    "django_valkey.cache.ValkeyCache": "redis",
    "django_valkey.cluster_cache.cache.ClusterValkeyCache": "redis",
    "django.core.cache.backends.memcached.PyMemcacheCache": "memcached",
    "django.core.cache.backends.db.DatabaseCache": "database",
    "django.core.cache.backends.locmem.LocMemCache": "locmem",
    "django.core.cache.backends.dummy.DummyCache": "dummy",
    "django.core.cache.backends.filebased.FileBasedCache": "file",
}

#: what to lock on instead of an unsafe family
SAFE_CHOICES = "Redis (django-redis), PyMemcacheCache or DatabaseCache"

#: families whose ``add`` is no lock across processes, and why
UNSAFE_FAMILIES = {
    "locmem": "LocMemCache keeps a separate cache in every process, so each worker gets the lock",
    "dummy": "DummyCache.add always returns True, so every caller gets the lock",
    "file": "FileBasedCache.add checks has_key() then calls set(), so two processes can both add",
}

ADAPTERS = {
    "redis": "tasklock.backends.redis_family.adapter",
    "memcached": "tasklock.backends.memcached.MemcachedBackend",
    "database": "tasklock.backends.database.DatabaseBackend",
    "locmem": "tasklock.backends.locmem.LocMemBackend",
}


class _ThreadAdapters(threading.local):
    """This thread's adapters by alias; valid while ``generation`` is the module's (a changed
    CACHES or TASKLOCK, or a fork, starts a new one). Only this holds them, so a thread's
    adapters, and their clients, go when the thread ends."""

    generation = -1

    def __init__(self) -> None:
        self.by_alias: dict[str, LockBackend] = {}


_here = _ThreadAdapters()
_generation = 0


def dotted_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def family_of(backend_class: type) -> str | None:
    """The family of a cache backend class, from ``TRUSTED_BACKENDS`` or the known ones."""
    trusted = conf.TRUSTED_BACKENDS
    for cls in backend_class.__mro__:
        path = dotted_path(cls)
        family = trusted.get(path) or KNOWN_BACKENDS.get(path)
        if family:
            return family
    return None


def usable_family(alias: str, cache: Any) -> str:
    """The family tasklock will use for ``cache``, or ``ImproperlyConfigured`` saying why not."""
    family = family_of(type(cache))
    path = dotted_path(type(cache))
    if family == "locmem" and conf.ALLOW_PROCESS_LOCAL_CACHE:
        return family
    if family in UNSAFE_FAMILIES:
        raise ImproperlyConfigured(
            f"tasklock refuses cache {alias!r} ({path}): {UNSAFE_FAMILIES[family]}. Use {SAFE_CHOICES}."
        )
    if family is None:
        raise ImproperlyConfigured(f"tasklock does not know cache {alias!r} ({path}). {how_to_trust(path)}")
    return family


def how_to_trust(path: str) -> str:
    """How to declare backend ``path`` trusted, as one sentence."""
    return (
        "If its add() is atomic across processes, declare it: "
        f'TASKLOCK = {{"TRUSTED_BACKENDS": {{"{path}": "redis"}}}} '
        '(or "memcached" / "database", the family whose client it uses).'
    )


def get_backend(alias: str | None = None) -> LockBackend:
    """The adapter for cache ``alias`` (default ``TASKLOCK["CACHE"]``), made once per thread.

    Django gives each thread its own cache object; the adapter of this thread's is kept per
    thread too, so a lock pays no ``caches[alias]`` lookup. The runtime guard
    (``usable_family``) runs when the adapter is made: a process cannot lock on a cache that
    is no lock, whatever the system checks said."""
    alias = alias or conf.CACHE
    here = _here
    if here.generation == _generation:
        adapter = here.by_alias.get(alias)
        if adapter is not None:
            return adapter
    else:
        here.by_alias.clear()
        here.generation = _generation
    adapter = here.by_alias[alias] = _adapter(alias)
    return adapter


def _adapter(alias: str) -> LockBackend:
    """A new adapter of this thread's cache object for ``alias``."""
    try:
        cache = caches[alias]
    except InvalidCacheBackendError:
        raise ImproperlyConfigured(
            f"tasklock cache {alias!r} is not an alias in CACHES; set TASKLOCK['CACHE']"
        ) from None
    module, _, name = ADAPTERS[usable_family(alias, cache)].rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)(cache)
    except LockError as exc:
        raise LockError(f"tasklock cache {alias!r}: {exc}") from exc.__cause__


def _forget_adapters() -> None:
    """Every thread makes its adapters again at its next lock."""
    global _generation
    _generation += 1


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    """A changed TASKLOCK may trust or refuse a backend: judge every cache again. A changed
    CACHES gives every thread new cache objects: look them up again."""
    if setting in ("TASKLOCK", "CACHES"):
        _forget_adapters()


# a forked child makes its own adapters (a Lock made before the fork keeps its adapter, whose
# clients are reset there: see memcached.py)
os.register_at_fork(after_in_child=_forget_adapters)
