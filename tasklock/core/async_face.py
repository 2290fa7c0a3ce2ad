"""The async face of ``Lock``: ``aacquire``, ``arelease``, ``aextend``, ``alocked``, ``aowned``.

Each drives the same plan as its sync twin (the backend's acquiring plan between
``Lock._attempt`` and ``Lock._ended``, ``_releasing``, …), awaiting
each call on this event loop's async adapter (``backends.per_loop``): an asyncio client on
Redis, worker threads on memcached and the database. So a sync holder and an async holder of
one name exclude each other, with the same keys, values and scripts. A renewing lock is
renewed by the process's renewer thread, as a sync holder's is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..backends.per_loop import async_backend
from ..backends.threaded import in_worker_thread
from ..exceptions import LockError, LockNotAcquired, shown
from ..values.calls import Call, Plan, one
from .arguments import seconds
from .async_drivers import adrive
from .renewer import renewer

if TYPE_CHECKING:
    from .lock import Lock

logger = logging.getLogger("tasklock")


class AsyncFace:
    """``Lock``'s coroutine methods (a mixin: ``Lock`` holds the state and the plans)."""

    async def _adrive(self: Lock, plan: Plan[Any]) -> Any:
        return await adrive(plan, async_backend(self.cache_alias), self._failed)

    async def aacquire(self: Lock, blocking: bool = False, wait: float | None = None) -> bool:
        """``acquire`` without blocking the event loop: one try, or with ``blocking`` until the
        lock is free (handed over, in line, on Redis) or ``wait`` runs out. A cancelled waiter
        leaves the line at once and gives back a lock granted to it meanwhile."""
        started = time.monotonic()
        attempt = self._attempt(blocking, wait, started)
        backend = async_backend(self.cache_alias)
        try:
            grant = await adrive(backend.acquiring(attempt), backend, self._failed)  # type: ignore[arg-type]
        except LockError:
            self._errored(started, blocking)
            raise
        return self._ended(backend, grant, started, blocking)  # type: ignore[arg-type]

    async def arelease(self: Lock) -> bool:
        """``release``: False if the lock had expired, was cleared or taken. Cancelled halfway,
        it sends its owner-checked delete once more before it lets the cancellation through,
        so the lock is not left held until its TTL."""
        watch = self._watch
        if watch is not None and watch.running:  # a renewal under way: wait for it off the loop
            await in_worker_thread(renewer().forget, self)
        value = self._held_value()
        try:
            return await self._adrive(self._releasing())
        except asyncio.CancelledError:
            if value is not None:
                await self._adrive(one(Call(self._delete, (self._key, value))))
            raise

    async def aextend(self: Lock, timeout: float | None = None) -> bool:
        """``extend``: reset this holder's TTL to ``timeout`` (default: the lock's). A renewing
        lock takes turns with the renewer's thread on a thread lock: in a worker thread."""
        timeout = self.timeout if timeout is None else seconds(timeout, "extend timeout")
        if self.renew:
            return await in_worker_thread(self.extend, timeout)
        return self._settle(await self._adrive(self._renewing(timeout)))

    async def alocked(self: Lock) -> bool:
        """``locked``: True if anyone holds the lock."""
        return await self._adrive(one(Call("get", (self._key,)))) is not None

    async def aowned(self: Lock) -> bool:
        """``owned``: True if this Lock's token holds the lock."""
        return await self._adrive(self._owning())

    async def arelease_quietly(self: Lock) -> None:
        """``release_quietly``: a lost or failed release is logged, never raised."""
        try:
            if await self.arelease():
                return
            logger.warning("lock %s had expired or been cleared before it was released", shown(self.name))
        except LockError:
            name = shown(self.name)
            logger.warning("releasing lock %s failed; it lives until its TTL", name, exc_info=True)

    async def __aenter__(self: Lock) -> Lock:
        if not await self.aacquire():
            raise LockNotAcquired(f"lock {shown(self.name)} is held by someone else")
        return self

    async def __aexit__(
        self: Lock,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.arelease_quietly()
