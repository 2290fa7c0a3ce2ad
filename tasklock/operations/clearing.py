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
from .inventory import HeldLockInfo, cache_errors, rows

logger = logging.getLogger("tasklock")


def os_user() -> str:
    """Who runs this process, for ``lock_cleared``'s ``by`` from the command line."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid {os.getuid()}"


def force_clear(name: str, *, by: str, via: str, cache: str | None = None) -> list[HeldLockInfo]:
    """Delete lock ``name`` whoever holds it: the records of the holders removed (every live
    holder of a limited name, by this machine's clock), none if nobody held it.

    Only the key of ``name`` inside ``TASKLOCK["KEY_PREFIX"]`` is ever deleted. One log line
    names every holder removed; ``lock_cleared`` is sent once for the name.
    """
    alias = cache or conf.CACHE
    backend = get_backend(alias)
    key = backend.key(name)
    with cache_errors(backend, alias, f"clearing lock {shown(name)}"):
        removed = backend.clear(key)
    if removed is None:
        return []
    entries = rows(name, Stored(key, removed), time.time())
    if not entries:
        return []  # a limited name whose slots had all expired: nobody held it
    if entries[0].limit == 1:
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
    else:
        logger.warning(
            "lock %r (limit %d) force-cleared by %s via %s; it was held by %s",
            name,
            entries[0].limit,
            by,
            via,
            "; ".join(f"{e.holder} (task {e.task_name}, id {e.task_id})" for e in entries),
        )
    lock_cleared.send_robust(sender=Lock, name=name, by=by, via=via)
    return entries


def clear(name: str, cache: str | None = None) -> HeldLockInfo | None:
    """Force-clear lock ``name`` in ``cache`` (default ``TASKLOCK["CACHE"]``), whoever holds it:
    the record of the holder removed, or None if nobody held it. A limited name loses every
    holder; the first of them is returned (its ``limit`` tells), the log names them all.
    Logged; ``lock_cleared`` is sent with ``via="python"``. A cache error is a ``LockError``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a lock name must be a non-empty str, got {name!r:.100}")
    removed = force_clear(name, by=os_user(), via="python", cache=cache_alias(cache))
    return removed[0] if removed else None
