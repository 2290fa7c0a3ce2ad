"""A with-block around a ``Lock``: ``lock()`` and its async twin ``alock()``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from .lock import Lock


@contextmanager
def lock(
    name: str,
    timeout: float | None = None,
    *,
    cache: str | None = None,
    blocking: bool = False,
    wait: float | None = None,
    renew: bool = False,
    fair: bool = False,
    limit: int = 1,
) -> Iterator[Lock]:
    """Try to take ``name`` (a slot of it, with ``limit``); yields the Lock, falsy when it is
    held by someone else (by ``limit`` others)."""
    held = Lock(name, timeout, cache, renew=renew, fair=fair, limit=limit)
    acquired = held.acquire(blocking=blocking, wait=wait)
    try:
        yield held
    finally:
        if acquired:
            held.release_quietly()


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
