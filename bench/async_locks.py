"""The async face: uncontended cycles on one event loop against the raw async floor, and
1,000 concurrent async waiters on 10 names in one process.

The async floor is the sync floor on ``redis.asyncio``: a random token, ``SET NX PX`` and a
pre-registered Lua compare-and-delete, each awaited. The handoff of an async waiter is a row
of bench/handoff.py.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from . import locks
from .locks import COMPARE_AND_DELETE, NAME, TIMEOUT, Approach, Row, _checked
from .measure import Cycle, Timer, percentile

#: tasklock's async cycle on Redis: at most this many times the async floor's (issue 20)
ASYNC_TARGET = 1.10
REPEATS = 25
BATCH_SECONDS = 0.08
#: the scale run: waiters, names they spread over, how long each holds its lock (s)
WAITERS = 1000
NAMES = 10
SCALE_HOLD = 0.001
#: the loop-lag probe's period (s)
TICK = 0.005

AsyncCycle = Callable[[], Awaitable[object]]


def async_timer(loop: asyncio.AbstractEventLoop) -> Timer:
    """Times ``count`` awaited calls of an async cycle on ``loop``, one after another."""

    def timer(cycle: Cycle, count: int) -> list[int]:
        async def batch() -> list[int]:
            timings = [0] * count
            clock = time.perf_counter_ns
            for i in range(count):
                started = clock()
                await cycle()  # type: ignore[misc]
                timings[i] = clock() - started
            return timings

        return loop.run_until_complete(batch())

    return timer


def _async_client():
    import redis.asyncio

    return redis.asyncio.Redis.from_url(f"redis://{os.environ['TASKLOCK_BENCH_REDIS']}/0")


def async_floor() -> AsyncCycle:
    client = _async_client()
    release = client.register_script(COMPARE_AND_DELETE)

    async def cycle() -> None:
        token = secrets.token_hex(16)
        _checked(await client.set(NAME, token, nx=True, px=TIMEOUT * 1000), "SET NX PX")
        _checked(await release(keys=[NAME], args=[token]), "compare-and-delete")

    return cycle


def redis_py_async_lock() -> AsyncCycle:
    client = _async_client()

    async def cycle() -> None:
        held = client.lock(NAME, timeout=TIMEOUT)
        _checked(await held.acquire(blocking=False), "redis.asyncio Lock.acquire")
        await held.release()

    return cycle


def tasklock_async(alias: str) -> Callable[[], AsyncCycle]:
    def make() -> AsyncCycle:
        from tasklock import Lock

        async def cycle() -> None:
            held = Lock(NAME, TIMEOUT, cache=alias)
            _checked(await held.aacquire(), "tasklock Lock.aacquire")
            _checked(await held.arelease(), "tasklock Lock.arelease")

        return cycle

    return make


def tasklock_alock(alias: str) -> Callable[[], AsyncCycle]:
    def make() -> AsyncCycle:
        from tasklock import alock

        async def cycle() -> None:
            async with alock(NAME, TIMEOUT, cache=alias) as held:
                _checked(held, "tasklock alock")

        return cycle

    return make


def _tasklock(label: str, make: Callable[[], AsyncCycle]) -> Approach:
    return Approach(label, "redis", False, True, make, ASYNC_TARGET)


APPROACHES = (
    Approach("raw async SET NX PX + Lua delete (floor)", "redis", True, True, async_floor),
    Approach("redis.asyncio Lock (redis-py)", "redis", False, True, redis_py_async_lock),
    _tasklock("tasklock aacquire/arelease · django-redis", tasklock_async("default")),
    _tasklock("tasklock aacquire/arelease · Django RedisCache", tasklock_async("redis")),
    _tasklock("tasklock async with alock() · django-redis", tasklock_alock("default")),
)


def run(repeats: int = REPEATS, seconds: float = BATCH_SECONDS) -> list[Row]:
    """Every async approach, interleaved on one event loop; ratios to the async floor."""
    from .environment import setup_django

    setup_django()
    loop = asyncio.new_event_loop()
    try:
        return locks.run(repeats, seconds, APPROACHES, async_timer(loop))
    finally:
        loop.close()


@dataclass(frozen=True)
class Scale:
    """What 1,000 concurrent async waiters on 10 names cost one process."""

    waiters: int
    names: int
    #: from the first waiter started to all of them in line (each opens its connection)
    join_seconds: float
    join_lag_max_ms: float
    #: from the gates' release to the last waiter done: the lines served by handovers
    serve_seconds: float
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    #: connections to Redis the process opened, at most, while they waited
    connections: int
    #: the process's resident memory grew by this much (MiB) with the waiters in line
    memory_mib: float
    #: the process's threads, at most
    threads: int


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def scale(waiters: int = WAITERS, names: int = NAMES, hold: float = SCALE_HOLD) -> Scale:
    """``waiters`` coroutines take one of ``names`` names once each, blocking: all start at once
    and join the lines behind a gate holder per name; the gates' release starts the handovers."""
    from .environment import setup_django

    setup_django()
    from tasklock import Lock, alock

    async def main() -> Scale:
        probe = _async_client()
        before = int((await probe.info("clients"))["connected_clients"])
        lags: list[float] = []
        peak = [0, 0]  # connections, threads
        done = asyncio.Event()

        async def ticker() -> None:
            while not done.is_set():
                began = time.monotonic()
                await asyncio.sleep(TICK)
                lags.append(time.monotonic() - began - TICK)
                peak[1] = max(peak[1], threading.active_count())

        async def waiter(index: int) -> None:
            async with alock(f"bench:scale:{index % names}", TIMEOUT, blocking=True, wait=120) as held:
                _checked(held, "alock")
                await asyncio.sleep(hold)

        gates = [Lock(f"bench:scale:{index}", TIMEOUT) for index in range(names)]
        for gate in gates:
            _checked(await gate.aacquire(), "the gate's aacquire")
        lines = [gate._backend.companions(gate._key)[1] for gate in gates]  # type: ignore[attr-defined]
        rss = _rss_mib()
        ticking = asyncio.ensure_future(ticker())
        started = time.monotonic()
        tasks = [asyncio.ensure_future(waiter(index)) for index in range(waiters)]
        while sum([await probe.llen(line) for line in lines]) < waiters:
            await asyncio.sleep(0.01)
        joined = time.monotonic()
        join_lag = max(lags, default=0.0)
        served_from = len(lags)
        peak[0] = int((await probe.info("clients"))["connected_clients"]) - before
        grown = _rss_mib() - rss
        for gate in gates:
            _checked(await gate.arelease(), "the gate's arelease")
        await asyncio.gather(*tasks)
        served = time.monotonic()
        done.set()
        await ticking
        await probe.aclose()
        serving = lags[served_from:]
        return Scale(
            waiters, names, joined - started, join_lag * 1000, served - joined,
            statistics.median(serving) * 1000, percentile(serving, 99) * 1000, max(serving) * 1000,
            peak[0], grown, peak[1],
        )  # fmt: skip

    return asyncio.run(main())
