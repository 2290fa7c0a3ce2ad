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
) -> AsyncIterator[Lock]:
    """Try to take ``name`` without blocking the event loop; yields the Lock, falsy when
    someone else holds it."""
    held = Lock(name, timeout, cache, renew=renew, fair=fair)
    acquired = await held.aacquire(blocking=blocking, wait=wait)
    try:
        yield held
    finally:
        if acquired:
            await held.arelease_quietly()
