"""Force-clearing a lock by name, for operators: logged, and announced by ``lock_cleared``.

A cleared holder is not told; its ``release()`` then returns False and cannot touch a newer
holder's lock, because every owner check compares the full stored value.
"""

from __future__ import annotations

import getpass
import logging
import os

from .backends import get_backend
from .conf import conf
from .exceptions import shown
from .holder import Holder
from .inventory import cache_errors
from .lock import Lock
from .signals import lock_cleared

logger = logging.getLogger("tasklock")


def os_user() -> str:
    """Who runs this process, for ``lock_cleared``'s ``by`` from the command line."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid {os.getuid()}"


def force_clear(name: str, *, by: str, via: str, cache: str | None = None) -> bool:
    """Delete lock ``name`` whoever holds it; False if nobody held it.

    Only the key of ``name`` inside ``TASKLOCK["KEY_PREFIX"]`` is ever deleted.
    """
    alias = cache or conf.CACHE
    backend = get_backend(alias)
    with cache_errors(backend, alias, f"clearing lock {shown(name)}"):
        removed = backend.clear(backend.key(name))
    if removed is None:
        return False
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
    lock_cleared.send(sender=Lock, name=name, by=by, via=via)
    return True
