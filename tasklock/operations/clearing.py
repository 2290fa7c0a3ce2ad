"""Force-clearing a lock by name, for operators: logged, and announced by ``lock_cleared``.

A cleared holder is not told; its ``release()`` then returns False and cannot touch a newer
holder's lock, because every owner check compares the full stored value.
"""

from __future__ import annotations

import getpass
import logging
import os
import time

from ..backends import get_backend
from ..backends.base import Stored
from ..conf import conf
from ..core.lock import Lock, cache_alias
from ..exceptions import shown
from ..signals import lock_cleared
from ..values.holder import Holder
from .inventory import HeldLockInfo, cache_errors

logger = logging.getLogger("tasklock")


def os_user() -> str:
    """Who runs this process, for ``lock_cleared``'s ``by`` from the command line."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid {os.getuid()}"


def force_clear(name: str, *, by: str, via: str, cache: str | None = None) -> HeldLockInfo | None:
    """Delete lock ``name`` whoever holds it: the record of the holder removed, None if nobody
    held it.

    Only the key of ``name`` inside ``TASKLOCK["KEY_PREFIX"]`` is ever deleted.
    """
    alias = cache or conf.CACHE
    backend = get_backend(alias)
    key = backend.key(name)
    with cache_errors(backend, alias, f"clearing lock {shown(name)}"):
        removed = backend.clear(key)
    if removed is None:
        return None
    holder = Holder.decode(removed)
    logger.warning(
        "lock %r force-cleared by %s via %s; it was held by %s (task %s, id %s)",
        name,
        by,
        via,
        holder.holder if holder else "an unknown holder",
        holder.task_name if holder else None,
        holder.task_id if holder else None,
    )
    lock_cleared.send_robust(sender=Lock, name=name, by=by, via=via)
    return HeldLockInfo.from_stored(name, Stored(key, removed), time.time())


def clear(name: str, cache: str | None = None) -> HeldLockInfo | None:
    """Force-clear lock ``name`` in ``cache`` (default ``TASKLOCK["CACHE"]``), whoever holds it:
    the record of the holder removed, or None if nobody held it. Logged; ``lock_cleared`` is
    sent with ``via="python"``. A cache error is a ``LockError``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a lock name must be a non-empty str, got {name!r:.100}")
    return force_clear(name, by=os_user(), via="python", cache=cache_alias(cache))
