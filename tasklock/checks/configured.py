"""The lock cache as configured, read once for the checks (a bad ``TASKLOCK`` reads as None:
``tasklock.E003`` reports it, and the checks that need the value stay silent)."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ..backends import family_of
from ..conf import conf


class LockCache(NamedTuple):
    """The cache that holds the locks, as configured."""

    alias: str
    config: dict[str, Any]
    backend: type
    family: str | None


def setting(name: str) -> Any:
    """``conf.<name>``, or None when the value is invalid (``tasklock.E003`` reports it)."""
    try:
        return getattr(conf, name)
    except ImproperlyConfigured:
        return None


def lock_cache() -> LockCache | list[CheckMessage]:
    """The lock cache, or what stops tasklock from knowing it (empty when E003 covers it)."""
    alias = setting("CACHE")
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
