"""What the async face needs of a cache: an asyncio adapter beside the synchronous one.

An async adapter has the synchronous adapter's methods as coroutines (``add``, ``get``,
``delete_if``, ``take_or_queue``, …) and takes its plans from it unchanged (``acquiring``):
the async face drives the same plans as the sync face, only awaiting each call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from .base import LockBackend

T = TypeVar("T")


class AsyncBackend:
    """The asyncio face of the synchronous adapter ``sync``: its plans, flags and errors."""

    def __init__(self, sync: LockBackend) -> None:
        self.sync = sync
        self.errors = sync.errors
        self.fences = sync.fences
        self.hands_over = sync.hands_over
        self.acquiring = sync.acquiring
        self.failure = sync.failure


async def to_the_end(call: Awaitable[T]) -> T:
    """Await ``call``; if the caller is cancelled meanwhile, let ``call`` finish first, then
    raise ``CancelledError``: for work that cannot be stopped halfway (a call under way in a
    worker thread, a release), so what comes after sees all of its effect."""
    task = asyncio.ensure_future(call)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise
