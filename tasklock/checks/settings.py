"""tasklock.E003: the ``TASKLOCK`` setting itself."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error

from ..conf import DEFAULTS, FAMILIES, problems
from .configured import lock_cache, setting


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """tasklock.E003: unknown keys, wrong types or non-positive timeouts in ``TASKLOCK``, or
    ``REPLICAS`` for a lock cache that has no replicas to confirm an acquire."""
    return [
        Error(
            problem,
            hint=(
                f"TASKLOCK takes {', '.join(DEFAULTS)}; TIMEOUT is seconds in (0, 365 days]; "
                f"TRUSTED_BACKENDS maps dotted backend paths to {' / '.join(FAMILIES)}; METRIC_NAME is "
                "None, a callable(lock name, task name) -> str, or its dotted path."
            ),
            obj="TASKLOCK",
            id="tasklock.E003",
        )
        for problem in problems(getattr(settings, "TASKLOCK", {}))
    ] + _replicas_ignored()


def _replicas_ignored() -> list[CheckMessage]:
    """tasklock.E003 when ``REPLICAS`` asks memcached or the database cache for confirmations:
    only Redis has ``WAIT``, so the setting would do nothing there."""
    replicas = setting("REPLICAS")
    found = lock_cache() if replicas else []
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
