"""Handoff under contention: how long a lock stays free between one holder's release and the
next blocked waiter's acquire.

``WAITERS`` processes contend for one name in rounds: each takes the lock once per round,
holds it ``HOLD`` seconds and releases it, so every round gives ``WAITERS - 1`` handoffs to a
waiter that was already blocked when the lock was released (a pair where the next holder
started waiting only after that release is left out). Rounds of all approaches alternate.
Times are ``time.monotonic()``, one clock for every process on Linux.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .measure import percentile

WAITERS = 4
HOLD = 0.005
ROUNDS = 30
#: the longest any waiter blocks before it gives up (and the bench fails)
WAIT = 30
LOCK_TIMEOUT = 30
#: the targets for tasklock's median handoff (s): a release that hands the lock over (Redis),
#: and polling (memcached, the database)
HANDED_P50 = 0.0005
POLLED_P50 = 0.010

#: one round: (started waiting, acquired, releasing), per waiter
Event = tuple[float, float, float]
Contender = Callable[[], Event]


@dataclass(frozen=True)
class Approach:
    label: str
    how: str
    make: Callable[[str], Contender]
    #: tasklock's target for the median handoff (s); None for the peers
    target: float | None = None


def redis_client():
    """A plain redis-py client of the benchmark's Redis."""
    import os

    import redis

    return redis.Redis.from_url(f"redis://{os.environ['TASKLOCK_BENCH_REDIS']}/0")


def _held(started: float) -> Event:
    acquired = time.monotonic()
    time.sleep(HOLD)
    return started, acquired, time.monotonic()


def raw_retry_loop(hold: Callable[[float], Event], timeout: float, wait: float) -> Callable[[str], Event]:
    """The raw floor as a waiting lock: a random token, ``SET NX PX`` retried every millisecond,
    ``hold``, a Lua compare-and-delete; takes the lock name per call."""
    import secrets

    from .locks import COMPARE_AND_DELETE

    client = redis_client()
    release = client.register_script(COMPARE_AND_DELETE)

    def contend(name: str) -> Event:
        token, started = secrets.token_hex(16), time.monotonic()
        while not client.set(name, token, nx=True, px=int(timeout * 1000)):
            if time.monotonic() - started > wait:
                raise RuntimeError(f"the raw floor waited {wait} s in vain")
            time.sleep(0.001)
        event = hold(started)
        release(keys=[name], args=[token])
        return event

    return contend


def raw_floor(name: str) -> Contender:
    contend = raw_retry_loop(_held, LOCK_TIMEOUT, WAIT)
    return lambda: contend(name)


def redis_py_lock(sleep: float) -> Callable[[str], Contender]:
    def make(name: str) -> Contender:
        client = redis_client()

        def contend() -> Event:
            held = client.lock(name, timeout=LOCK_TIMEOUT, sleep=sleep, blocking_timeout=WAIT)
            started = time.monotonic()
            if not held.acquire(blocking=True):
                raise RuntimeError(f"redis-py Lock waited {WAIT} s in vain")
            event = _held(started)
            held.release()
            return event

        return contend

    return make


def python_redis_lock(name: str) -> Contender:
    import redis_lock

    client = redis_client()

    def contend() -> Event:
        held = redis_lock.Lock(client, name, expire=LOCK_TIMEOUT)
        started = time.monotonic()
        if not held.acquire(blocking=True, timeout=WAIT):
            raise RuntimeError(f"python-redis-lock waited {WAIT} s in vain")
        event = _held(started)
        held.release()
        return event

    return contend


def tasklock_wait(alias: str) -> Callable[[str], Contender]:
    """tasklock's ``wait`` policy: a function decorated with ``task_lock(on_locked="wait")``."""

    def make(name: str) -> Contender:
        from tasklock import task_lock

        @task_lock(name, timeout=LOCK_TIMEOUT, on_locked="wait", wait=WAIT, cache=alias)
        def body(started: float) -> Event:
            return _held(started)

        def contend() -> Event:
            return body(time.monotonic())

        return contend

    return make


#: this process's event loop, for the async contenders (an asyncio client belongs to its loop)
_loop: asyncio.AbstractEventLoop | None = None


def on_loop(contend: Callable[[], Awaitable[Event]]) -> Contender:
    """An async contender, run to completion on this process's event loop."""

    def run() -> Event:
        global _loop
        _loop = _loop or asyncio.new_event_loop()
        return _loop.run_until_complete(contend())

    return run


async def _held_async(started: float) -> Event:
    acquired = time.monotonic()
    await asyncio.sleep(HOLD)
    return started, acquired, time.monotonic()


def redis_py_async_lock(sleep: float) -> Callable[[str], Contender]:
    def make(name: str) -> Contender:
        import os

        import redis.asyncio

        client = redis.asyncio.Redis.from_url(f"redis://{os.environ['TASKLOCK_BENCH_REDIS']}/0")

        async def contend() -> Event:
            held = client.lock(name, timeout=LOCK_TIMEOUT, sleep=sleep, blocking_timeout=WAIT)
            started = time.monotonic()
            if not await held.acquire(blocking=True):
                raise RuntimeError(f"redis.asyncio Lock waited {WAIT} s in vain")
            event = await _held_async(started)
            await held.release()
            return event

        return on_loop(contend)

    return make


def tasklock_alock(alias: str) -> Callable[[str], Contender]:
    """tasklock's async face: ``async with alock(name, blocking=True)``."""

    def make(name: str) -> Contender:
        from tasklock import alock

        async def contend() -> Event:
            started = time.monotonic()
            async with alock(name, LOCK_TIMEOUT, cache=alias, blocking=True, wait=WAIT) as held:
                if not held:
                    raise RuntimeError(f"tasklock alock waited {WAIT} s in vain")
                return await _held_async(started)

        return on_loop(contend)

    return make


HANDED = "handed over by the release"
POLLS = "polls, backoff to 10 ms"
APPROACHES = (
    Approach("raw SET NX PX, retried every 1 ms (floor)", "polls 1 ms", raw_floor),
    Approach("redis-py Lock, sleep 0.1 (default)", "polls", redis_py_lock(0.1)),
    Approach("redis-py Lock, sleep 0.01", "polls", redis_py_lock(0.01)),
    Approach("python-redis-lock", "BLPOP on a signal list", python_redis_lock),
    Approach("tasklock wait · django-redis", HANDED, tasklock_wait("default"), HANDED_P50),
    Approach("tasklock wait · Django RedisCache", HANDED, tasklock_wait("redis"), HANDED_P50),
    Approach("tasklock wait · PyMemcacheCache", POLLS, tasklock_wait("memcached"), POLLED_P50),
    Approach("tasklock wait · DatabaseCache", POLLS, tasklock_wait("database"), POLLED_P50),
    Approach("redis.asyncio Lock, sleep 0.1 (default) · async", "polls", redis_py_async_lock(0.1)),
    Approach("redis.asyncio Lock, sleep 0.01 · async", "polls", redis_py_async_lock(0.01)),
    Approach("tasklock alock · django-redis · async", HANDED, tasklock_alock("default"), HANDED_P50),
)  # fmt: skip


def _waiter(rounds: int, barrier, results) -> None:
    """One contending process: every round, wait at the barrier, then take the lock once."""
    from .environment import setup_django

    setup_django()
    contenders = [a.make(f"bench:handoff:{i}") for i, a in enumerate(APPROACHES)]
    events: list[list[Event]] = [[] for _ in APPROACHES]
    for _ in range(rounds):
        for index, contend in enumerate(contenders):
            barrier.wait()
            events[index].append(contend())
    results.put(events)


@dataclass(frozen=True)
class Row:
    approach: Approach
    handoffs: list[float]

    @property
    def p50_ms(self) -> float:
        return percentile(self.handoffs, 50) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.handoffs, 99) * 1000

    @property
    def target_met(self) -> bool | None:
        target = self.approach.target
        return None if target is None else self.p50_ms <= target * 1000


def handoffs(rounds: list[list[Event]]) -> list[float]:
    """Release-to-acquire gaps, round by round, where the next holder was already waiting."""
    gaps = []
    for events in rounds:
        ordered = sorted(events, key=lambda event: event[1])
        for before, after in itertools.pairwise(ordered):
            if after[0] < before[2]:
                gaps.append(after[1] - before[2])
    return gaps


def run(rounds: int = ROUNDS, waiters: int = WAITERS) -> list[Row]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(waiters, timeout=WAIT + 30)
    results = context.Queue()
    processes = [context.Process(target=_waiter, args=(rounds, barrier, results)) for _ in range(waiters)]
    for process in processes:
        process.start()
    collected = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join(30)
    return [
        Row(approach, handoffs([[per_waiter[index][r] for per_waiter in collected] for r in range(rounds)]))
        for index, approach in enumerate(APPROACHES)
    ]
