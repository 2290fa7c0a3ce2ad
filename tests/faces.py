"""The two faces of a Lock, behind one interface, so a test runs the same case on both: the
sync methods, and the async ones run to completion on one event loop per test."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tasklock import Lock, alock, lock


class SyncFace:
    name = "sync"

    def acquire(self, held: Lock, **kwargs: Any) -> bool:
        return held.acquire(**kwargs)

    def release(self, held: Lock) -> bool:
        return held.release()

    def extend(self, held: Lock, *args: Any) -> bool:
        return held.extend(*args)

    def locked(self, held: Lock) -> bool:
        return held.locked()

    def owned(self, held: Lock) -> bool:
        return held.owned()

    def block(self, name: str, body: Callable[[Lock], Any], **kwargs: Any) -> Lock:
        """Run ``body`` inside ``lock(name, **kwargs)``; the Lock it yielded."""
        with lock(name, **kwargs) as held:
            body(held)
        return held

    def enter(self, held: Lock, body: Callable[[Lock], Any]) -> None:
        """Run ``body`` inside ``with held``."""
        with held:
            body(held)

    def close(self) -> None:
        pass


class AsyncFace:
    name = "async"

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def acquire(self, held: Lock, **kwargs: Any) -> bool:
        return self.run(held.aacquire(**kwargs))

    def release(self, held: Lock) -> bool:
        return self.run(held.arelease())

    def extend(self, held: Lock, *args: Any) -> bool:
        return self.run(held.aextend(*args))

    def locked(self, held: Lock) -> bool:
        return self.run(held.alocked())

    def owned(self, held: Lock) -> bool:
        return self.run(held.aowned())

    def block(self, name: str, body: Callable[[Lock], Any], **kwargs: Any) -> Lock:
        async def run() -> Lock:
            async with alock(name, **kwargs) as held:
                body(held)
            return held

        return self.run(run())

    def enter(self, held: Lock, body: Callable[[Lock], Any]) -> None:
        async def run() -> None:
            async with held:
                body(held)

        self.run(run())

    def close(self) -> None:
        self.loop.close()


FACES = {"sync": SyncFace, "async": AsyncFace}
