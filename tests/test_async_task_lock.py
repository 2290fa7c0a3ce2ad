"""``task_lock`` on ``async def`` functions: the lock taken with the async face (issue 20)."""

import asyncio
import uuid

import pytest

from tasklock import SKIPPED, Lock, LockNotAcquired, held_lock, task_lock
from tasklock.signals import lock_contended


def unique(prefix: str = "atl") -> str:
    return f"{prefix}:{uuid.uuid4().hex}"


@pytest.fixture
def contended():
    events = []

    def receiver(sender, name, policy, task_id, **kwargs):
        events.append((name, policy))

    lock_contended.connect(receiver)
    yield events
    lock_contended.disconnect(receiver)


def test_the_body_runs_holding_the_lock_that_held_lock_names(lock_cache):
    @task_lock(key="report:{report_id}", timeout=10, cache=lock_cache)
    async def build(report_id):
        held = held_lock()
        assert held and held.renew and await held.aowned()
        return held

    assert asyncio.iscoroutinefunction(build)
    held = asyncio.run(build(unique()))
    assert held.name.startswith("report:") and not held and held_lock() is None
    assert not Lock(held.name, cache=lock_cache).locked(), "released after the body"


def test_concurrent_bodies_each_see_their_own_lock(redis_server):
    seen = {}

    @task_lock(key="part:{part}", timeout=10)
    async def work(part, started, go):
        started.set()
        await go.wait()
        seen[part] = held_lock().name

    async def main():
        go, started = asyncio.Event(), [asyncio.Event(), asyncio.Event()]
        parts = [unique(), unique()]
        pairs = zip(parts, started, strict=True)
        calls = [asyncio.ensure_future(work(part, event, go)) for part, event in pairs]
        for event in started:
            await event.wait()
        go.set()
        await asyncio.gather(*calls)
        return parts

    parts = asyncio.run(main())
    assert seen == {part: f"part:{part}" for part in parts}


@pytest.mark.parametrize("policy", [None, "raise", "skip"])
def test_a_held_lock_skips_or_raises_without_waiting(policy, redis_server, contended):
    key = unique()

    @task_lock(key=key, timeout=10, on_locked=policy)
    async def body():
        raise AssertionError("the body ran without its lock")

    async def main():
        blocker = Lock(key, timeout=10)
        assert await blocker.aacquire()
        try:
            if policy == "skip":
                assert await body() == SKIPPED
            else:
                with pytest.raises(LockNotAcquired, match="held by someone else"):
                    await body()
        finally:
            await blocker.arelease()

    asyncio.run(main())
    assert contended == [(key, policy or "raise")]


def test_wait_takes_the_lock_once_the_holder_lets_go_without_blocking_the_loop(lock_cache):
    key = unique()

    @task_lock(key=key, timeout=10, on_locked="wait", wait=30, cache=lock_cache)
    async def body():
        return held_lock().name

    async def main():
        blocker = Lock(key, timeout=10, cache=lock_cache)
        assert await blocker.aacquire()
        waiting = asyncio.ensure_future(body())
        ticks = 0
        while ticks < 20:  # the loop keeps running while the body waits for its lock
            await asyncio.sleep(0.005)
            ticks += 1
        assert not waiting.done()
        assert await blocker.arelease()
        return await waiting

    assert asyncio.run(main()) == key


def test_retry_needs_a_celery_task_and_unique_is_refused_at_decoration(redis_server):
    @task_lock(key=unique(), on_locked="retry", countdown=1)
    async def retried():
        raise AssertionError("not reached")

    with pytest.raises(TypeError, match="needs a Celery task"):
        asyncio.run(retried())
    with pytest.raises(ValueError, match="coroutine function"):

        @task_lock(key=unique(), unique="until_executed")
        async def queued():
            raise AssertionError("not reached")
