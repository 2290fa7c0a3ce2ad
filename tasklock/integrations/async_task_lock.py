"""``task_lock`` on an ``async def`` function (a plain coroutine function, or an async task
body): the lock is taken and released with the async face, so a waiting call never blocks the
event loop; ``held_lock()`` inside the body is its Lock (a context variable: per asyncio task).

The policies are the sync wrapper's where no worker can retry the call: ``skip`` returns
``SKIPPED``, ``raise`` (and the default) raises ``LockNotAcquired``, ``wait`` waits up to
``wait`` seconds (default: the lock's timeout) first; ``retry`` needs a Celery task, which runs
no coroutine: ``TypeError`` at the call, as for a plain function.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..core.lock import Lock
from ..exceptions import LockNotAcquired, shown
from ..signals import lock_contended
from .holding import SKIPPED, holding
from .uniqueness import WHILE_EXECUTING

if TYPE_CHECKING:
    from .decorator import LockSpec

logger = logging.getLogger("tasklock")

#: how the sync wrapper names a call's lock: (task, args, kwargs, bound) -> name
Namer = Callable[[Any, tuple, dict, bool], str]


def locked_coroutine(
    fn: Callable[..., Awaitable[Any]], spec: LockSpec, lock_name: Namer
) -> Callable[..., Awaitable[Any]]:
    """The ``task_lock`` wrapper of coroutine function ``fn``."""
    if spec.unique != WHILE_EXECUTING:
        raise ValueError(
            f"task_lock unique={spec.unique!r} needs a Celery task (base=UniqueTask), and Celery runs "
            f"no async def body: {fn.__qualname__} is a coroutine function"
        )

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if spec.on_locked == "retry":
            raise TypeError(
                f'task_lock(on_locked="retry") needs a Celery task, and {fn.__qualname__} is a coroutine '
                "function, which Celery does not run; use another policy"
            )
        name = lock_name(None, args, kwargs, False)
        held = Lock(name, spec.timeout, spec.cache, renew=spec.renew, fair=spec.fair, limit=spec.limit)
        if spec.on_locked == "wait":
            acquired = await held.aacquire(
                blocking=True, wait=held.timeout if spec.wait is None else spec.wait
            )
        else:
            acquired = await held.aacquire()
        if not acquired:
            return _contended(held.name, "skip" if spec.on_locked == "skip" else "raise")
        token = holding.set(held)
        try:
            return await fn(*args, **kwargs)
        finally:
            holding.reset(token)
            await held.arelease_quietly()

    wrapper.tasklock = spec  # type: ignore[attr-defined]
    wrapper.tasklock_name = lock_name  # type: ignore[attr-defined]
    return wrapper


def _contended(name: str, policy: str) -> Any:
    lock_contended.send_robust(sender=Lock, name=name, policy=policy, task_id=None)
    logger.info("lock %s is held; policy %s", shown(name), policy)
    if policy == "skip":
        return SKIPPED
    raise LockNotAcquired(f"lock {shown(name)} is held by someone else")
