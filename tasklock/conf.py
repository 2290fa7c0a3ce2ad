"""The ``TASKLOCK`` setting: defaults, validation, and one object that reads it lazily.

A value is looked up and validated at its first use, then kept until Django says the
setting changed (``setting_changed``, which ``override_settings`` sends).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

FAMILIES = ("redis", "memcached", "database")
#: what a key prefix must not contain: white space (as ``str.isspace``) or glob characters
PREFIX_FORBIDDEN = re.compile(r"[\s*?\[\]]")

#: the longest lock timeout, on every backend (365 days): memcached reads a longer exptime as
#: a date past 2038, which has already passed (nothing is stored), and the database cache
#: overflows
MAX_TIMEOUT = 365 * 24 * 3600

DEFAULTS: dict[str, Any] = {
    "CACHE": "default",
    "KEY_PREFIX": "tasklock",
    "TIMEOUT": 60,
    "TRUSTED_BACKENDS": {},
    "ALLOW_PROCESS_LOCAL_CACHE": False,
    "REPLICAS": 0,
    "REPLICA_TIMEOUT": 0.1,
    "METRIC_NAME": None,
}


def timeout_problem(value: object) -> str | None:
    """What makes ``value`` no lock timeout, or None: a finite number of seconds in (0, MAX]."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value < math.inf:
        return "must be a finite number of seconds greater than 0"  # NaN fails every comparison
    if value > MAX_TIMEOUT:
        return f"must be at most {MAX_TIMEOUT} seconds (365 days)"
    return None


def _check_cache(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return "must be a cache alias (a non-empty string)"
    return None


def _check_key_prefix(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if PREFIX_FORBIDDEN.search(value):
        return "must not contain white space or glob characters (* ? [ ])"
    return None


def _check_trusted_backends(value: object) -> str | None:
    if not isinstance(value, dict):
        return 'must be a dict of {"dotted.BackendPath": "redis" | "memcached" | "database"}'
    for path, family in value.items():
        if not isinstance(path, str) or "." not in path:
            return f"key {path!r} is not a dotted backend path"
        if family not in FAMILIES:
            return f"{path!r} names unknown family {family!r}; use one of {', '.join(FAMILIES)}"
    return None


def _check_bool(value: object) -> str | None:
    if not isinstance(value, bool):
        return "must be True or False"
    return None


def _check_replicas(value: object) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return "must be a whole number of replicas, 0 or more (0: no replica confirms)"
    return None


def _check_replica_timeout(value: object) -> str | None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value < math.inf:
        return "must be a finite number of seconds greater than 0 (WAIT 0 would block forever)"
    return None


def _metric_name(value: object) -> Callable[[str, str | None], str] | None:
    """The ``METRIC_NAME`` callable: ``value`` itself, or the one its dotted path names."""
    return import_string(value) if isinstance(value, str) else value  # type: ignore[return-value]


def _check_metric_name(value: object) -> str | None:
    if value is None or callable(value):
        return None
    if not isinstance(value, str):
        return "must be None, a callable(lock name, task name) -> str, or its dotted path"
    try:
        found = _metric_name(value)
    except ImportError as exc:
        return f"names nothing importable: {exc}"
    return None if callable(found) else f"names {type(found).__name__} {found!r:.60}, not a callable"


VALIDATORS = {
    "CACHE": _check_cache,
    "KEY_PREFIX": _check_key_prefix,
    "TIMEOUT": timeout_problem,
    "TRUSTED_BACKENDS": _check_trusted_backends,
    "ALLOW_PROCESS_LOCAL_CACHE": _check_bool,
    "REPLICAS": _check_replicas,
    "REPLICA_TIMEOUT": _check_replica_timeout,
    "METRIC_NAME": _check_metric_name,
}
#: what a valid value becomes when read (a dotted path: the callable it names)
RESOLVERS: dict[str, Callable[[Any], Any]] = {"METRIC_NAME": _metric_name}


def problems(raw: object) -> list[str]:
    """Every problem with a raw ``TASKLOCK`` value, as ``TASKLOCK["KEY"] ...`` sentences."""
    if not isinstance(raw, dict):
        return [f"TASKLOCK must be a dict, not {type(raw).__name__}"]
    found = [f'TASKLOCK["{key}"] is not a tasklock setting' for key in raw if key not in DEFAULTS]
    for key, check in VALIDATORS.items():
        if key in raw and (message := check(raw[key])):
            found.append(f'TASKLOCK["{key}"] {message} (got {raw[key]!r})')
    return found


class TaskLockSettings:
    """Lazy access to ``settings.TASKLOCK`` merged over the defaults."""

    def __init__(self) -> None:
        #: values validated since the setting last changed
        self._valid: dict[str, Any] = {}
        setting_changed.connect(self._changed, weak=False)

    def _changed(self, *, setting: str, **kwargs: Any) -> None:
        if setting == "TASKLOCK":
            self._valid.clear()

    def _get(self, key: str) -> Any:
        try:
            return self._valid[key]
        except KeyError:
            value = self._valid[key] = self._read(key)
            return value

    def _read(self, key: str) -> Any:
        raw = getattr(settings, "TASKLOCK", {})
        if not isinstance(raw, dict):
            raise ImproperlyConfigured(f"TASKLOCK must be a dict, not {type(raw).__name__}")
        value = raw.get(key, DEFAULTS[key])
        if message := VALIDATORS[key](value):
            raise ImproperlyConfigured(f'TASKLOCK["{key}"] {message} (got {value!r})')
        return RESOLVERS[key](value) if key in RESOLVERS else value

    @property
    def CACHE(self) -> str:
        return self._get("CACHE")

    @property
    def KEY_PREFIX(self) -> str:
        return self._get("KEY_PREFIX")

    @property
    def TIMEOUT(self) -> float:
        return self._get("TIMEOUT")

    @property
    def TRUSTED_BACKENDS(self) -> dict[str, str]:
        return self._get("TRUSTED_BACKENDS")

    @property
    def ALLOW_PROCESS_LOCAL_CACHE(self) -> bool:
        return self._get("ALLOW_PROCESS_LOCAL_CACHE")

    @property
    def REPLICAS(self) -> int:
        return self._get("REPLICAS")

    @property
    def REPLICA_TIMEOUT(self) -> float:
        return self._get("REPLICA_TIMEOUT")

    @property
    def METRIC_NAME(self) -> Callable[[str, str | None], str] | None:
        return self._get("METRIC_NAME")


conf = TaskLockSettings()
