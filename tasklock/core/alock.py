"""``alock()``: the async context manager of a lock, as ``lock()`` is the sync one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .lock import Lock


@asynccontextmanager
async def alock(
    name: str,
    timeout: float | None = None,
    *,
    cache: str | None = None,
    blocking: bool = False,
    wait: float | None = None,
    renew: bool = False,
    fair: bool = False,
    limit: int = 1,
) -> AsyncIterator[Lock]:
    """Try to take ``name`` (a slot of it, with ``limit``) without blocking the event loop;
    yields the Lock, falsy when it is held by someone else (by ``limit`` others)."""
    held = Lock(name, timeout, cache, renew=renew, fair=fair, limit=limit)
    acquired = await held.aacquire(blocking=blocking, wait=wait)
    try:
        yield held
    finally:
        if acquired:
            await held.arelease_quietly()
