"""The async face's own cases (issue 20): handovers between sync and async holders, cancelled
waiters and releases, many coroutines on one loop, one client per event loop."""

import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid

import pytest
import redis

from tasklock import Lock, LockError, alock
from tasklock.backends import get_backend
from tasklock.backends.per_loop import async_backend
from tasklock.backends.redis_async import AsyncRedisBackend, AsyncRedisClusterBackend
from tasklock.backends.threaded import ThreadedBackend
from tests.test_line import waiter_process

#: every Redis-family cache, for the tests that wait in its line (the harness's own server)
ON_EACH_REDIS = pytest.mark.parametrize("alias", ["default", "redis", "valkey"])


def unique(prefix: str = "async") -> str:
    return f"{prefix}:{uuid.uuid4().hex}"


@pytest.fixture
def client(redis_server):
    """A plain client of the harness's Redis, to look at the lines."""
    return redis.Redis(port=redis_server.port)


async def until(condition, what: str, seconds: float = 60) -> None:
    """Return as soon as ``condition()`` is true, yielding to the loop meanwhile."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        await asyncio.sleep(0.002)


def line_of(held: Lock) -> tuple[str, str]:
    """The keys of ``held``'s waiting line and its tickets."""
    _, line, tickets = get_backend(held.cache_alias).companions(held._key)
    return line, tickets


def in_line(client, held: Lock) -> bool:
    return client.hexists(line_of(held)[1], held.token)


async def joined(client, waiter: Lock, **kwargs) -> asyncio.Future:
    """``waiter``'s blocking ``aacquire(**kwargs)``, once it waits in line."""
    waiting = asyncio.ensure_future(waiter.aacquire(blocking=True, **kwargs))
    await until(lambda: in_line(client, waiter), "the waiter joins the line")
    return waiting


def test_each_event_loop_has_its_own_adapter_and_a_loop_reuses_its_own(lock_cache):
    async def twice() -> tuple:
        return async_backend(lock_cache), async_backend(lock_cache)

    first, again = asyncio.run(twice())
    assert first is again
    assert asyncio.run(twice())[0] is not first
    expected = ThreadedBackend if lock_cache in ("memcached", "database") else AsyncRedisBackend
    assert type(first) is expected


@ON_EACH_REDIS
def test_an_async_waiter_is_handed_the_lock_by_a_sync_release(alias, client):
    async def main() -> None:
        holder = Lock(unique(), timeout=10, cache=alias)
        assert await asyncio.to_thread(holder.acquire)
        waiter = Lock(holder.name, timeout=10, cache=alias)
        waiting = await joined(client, waiter, wait=30)
        assert await asyncio.to_thread(holder.release)
        assert await waiting
        assert not in_line(client, waiter)
        assert await waiter.aowned() and await waiter.arelease()

    asyncio.run(main())


@ON_EACH_REDIS
def test_a_sync_waiter_in_another_process_is_handed_the_lock_by_an_async_release(alias, client):
    async def main() -> None:
        async with alock(unique(), timeout=10, cache=alias) as held:
            process, token = waiter_process(alias, held.name, 0, False)
            await until(lambda: client.hexists(line_of(held)[1], token), "the sync waiter joins the line")
        word, _ = process.stdout.readline().split()
        assert word == "acquired"
        assert process.wait(30) == 0

    asyncio.run(main())


@ON_EACH_REDIS
def test_a_waiter_cancelled_in_line_leaves_it_at_once_and_is_never_handed_the_lock(alias, client):
    async def main() -> None:
        holder = Lock(unique(), timeout=10, cache=alias)
        assert await holder.aacquire()
        waiter = Lock(holder.name, timeout=10, cache=alias)
        waiting = await joined(client, waiter)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert not in_line(client, waiter) and client.llen(line_of(waiter)[0]) == 0
        assert await holder.arelease()
        assert not await holder.alocked(), "the release handed the lock to nobody"
        assert await waiter.arelease() is False, "releasing after a cancellation is safe"

    asyncio.run(main())


@ON_EACH_REDIS
def test_asyncio_timeout_cancels_a_waiter_out_of_the_line(alias, client):
    async def main() -> None:
        async with alock(unique(), timeout=10, cache=alias) as held:
            waiter = Lock(held.name, timeout=10, cache=alias)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await waiter.aacquire(blocking=True)
            assert not in_line(client, waiter)
        assert not await held.alocked()

    asyncio.run(main())


@ON_EACH_REDIS
def test_a_grant_that_reaches_a_cancelled_waiter_goes_on_to_the_next_one(alias, client):
    """The release hands the lock to the first waiter (its BLPOP is answered), which is
    cancelled before it reads the answer: the grant goes on, to the second waiter."""

    async def main() -> None:
        holder = Lock(unique(), timeout=10, cache=alias)
        assert await holder.aacquire()
        first, second = (Lock(holder.name, timeout=10, cache=alias) for _ in range(2))
        first_waits = await joined(client, first)
        second_waits = await joined(client, second, wait=30)
        # no await between the two: the first waiter's BLPOP is answered, not yet read
        assert holder.release()  # the sync face, on the loop's thread: the server hands over
        assert not in_line(client, first), "the release granted the lock to the first waiter"
        first_waits.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first_waits
        assert not first and await first.aowned() is False
        assert await second_waits, "the grant went on to the second waiter"
        assert await second.arelease()

    asyncio.run(main())


@ON_EACH_REDIS
def test_a_release_cancelled_halfway_still_frees_the_lock(alias, client):
    async def main() -> None:
        holder = Lock(unique(), timeout=60, cache=alias)
        assert await holder.aacquire()
        waiter = Lock(holder.name, timeout=10, cache=alias)
        waiting = await joined(client, waiter, wait=10)  # far less than the holder's TTL
        releasing = asyncio.ensure_future(holder.arelease())
        await asyncio.sleep(0)  # the release starts: its script is sent
        releasing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await releasing
        assert await waiting, "the lock went on to the waiter, not left to its TTL"
        assert await holder.arelease() is False, "releasing after a cancellation is safe"
        assert await waiter.arelease()

    asyncio.run(main())


@pytest.mark.parametrize("round", range(5))
def test_a_cancelled_poller_never_keeps_the_lock(round, lock_cache):
    """memcached and the database poll (each add in a worker thread): a cancellation while an
    add is under way waits for it, and gives back a lock it took."""

    async def main() -> None:
        holder = Lock(unique(), timeout=10, cache=lock_cache)
        assert await holder.aacquire()
        waiter = Lock(holder.name, timeout=10, cache=lock_cache)
        waiting = asyncio.ensure_future(waiter.aacquire(blocking=True))
        await asyncio.sleep(0.01 * round)
        assert await holder.arelease()
        waiting.cancel()
        try:
            acquired = await waiting
        except asyncio.CancelledError:
            assert not await waiter.alocked(), "a cancelled waiter kept the lock"
        else:
            assert acquired and await waiter.arelease()  # it won before the cancellation came

    asyncio.run(main())


def test_the_cluster_caches_serve_the_async_face_on_an_asyncio_cluster_client(cluster_cache):
    async def main() -> None:
        assert type(async_backend(cluster_cache)) is AsyncRedisClusterBackend
        holder = Lock(unique("{x}"), timeout=10, cache=cluster_cache)
        assert await holder.aacquire() and holder.fencing_token is None
        waiter = Lock(holder.name, timeout=10, cache=cluster_cache)
        assert not await waiter.aacquire()
        waiting = asyncio.ensure_future(waiter.aacquire(blocking=True, wait=30))
        await asyncio.sleep(0.05)
        assert await asyncio.to_thread(holder.release)
        assert await waiting and await waiter.aowned() and await waiter.aextend(20)
        assert await waiter.arelease() and not await waiter.alocked()

    asyncio.run(main())


def sync_contender(alias: str, name: str, times: int, hold: float) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.thrice", alias, name, str(times), str(hold)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    assert process.stdout.readline().strip() == "ready"
    return process


def test_two_hundred_coroutines_and_two_processes_share_one_name_without_a_thread_each(client):
    """200 coroutines on one loop and 2 sync processes take one name 3 times each, blocking:
    no two holds overlap, the process runs no thread per waiter, the loop's lag p99 (how late a
    5 ms sleep wakes, while the line is served) stays within 20 ms."""
    alias, name, times, hold = "default", unique(), 3, 0.001
    processes = [sync_contender(alias, name, times, hold) for _ in range(2)]
    baseline_threads = threading.active_count()

    async def main() -> tuple[list, list, int]:
        intervals, lags, threads = [], [], [0]
        done = asyncio.Event()

        async def ticker() -> None:  # from the first release on: while the line is served
            while not done.is_set():
                began, cpu = time.monotonic(), time.process_time()
                await asyncio.sleep(0.005)
                late = time.monotonic() - began - 0.005
                lags.append((late, time.process_time() - cpu))
                threads[0] = max(threads[0], threading.active_count())

        async def contender() -> None:
            for _ in range(times):
                async with alock(name, timeout=30, cache=alias, blocking=True, wait=120) as held:
                    assert held
                    began = time.monotonic()
                    await asyncio.sleep(hold)
                    intervals.append((began, time.monotonic()))

        first = Lock(name, timeout=30, cache=alias)
        assert await first.aacquire()  # everyone queues behind it, then the chain of handovers
        for process in processes:
            process.stdin.write("go\n")
            process.stdin.flush()
        tasks = [asyncio.ensure_future(contender()) for _ in range(200)]
        line = line_of(first)[0]
        await until(lambda: client.llen(line) == 202, "all 202 contenders wait in line")
        ticking = asyncio.ensure_future(ticker())
        assert await first.arelease()
        await asyncio.gather(*tasks)
        done.set()
        await ticking
        return intervals, lags, threads[0]

    intervals, lags, threads = asyncio.run(main())
    for process in processes:
        out, _ = process.communicate(timeout=60)
        assert process.returncode == 0
        intervals.extend(tuple(interval) for interval in json.loads(out))
    assert len(intervals) == 202 * times
    intervals.sort()
    overlaps = [(a, b) for a, b in itertools.pairwise(intervals) if b[0] < a[1]]
    assert overlaps == []
    assert threads - baseline_threads <= 2, f"{threads} threads while {baseline_threads} before"
    # a tick's lag is how late it woke, of which the process spent that long on the CPU: on a
    # machine shared with other work the rest is time the OS gave to other processes
    p99 = statistics.quantiles([min(late, cpu) for late, cpu in lags], n=100)[98]
    wall_p99 = statistics.quantiles([late for late, _ in lags], n=100)[98]
    print(f"threads {baseline_threads} -> {threads}, lag p99 {p99:.4f} s (wall {wall_p99:.4f} s)")
    assert p99 <= 0.020, f"the loop's lag p99 was {p99 * 1000:.1f} ms"


@pytest.mark.parametrize("cache", ["sentinel", "django_sentinel"])
def test_a_sentinel_managed_redis_serves_the_async_face_from_worker_threads(cache, redis_sentinel):
    async def main() -> None:
        assert type(async_backend(cache)) is ThreadedBackend
        held = Lock(unique(), timeout=5, cache=cache)
        assert await held.aacquire() and isinstance(held.fencing_token, int)
        waiter = Lock(held.name, timeout=5, cache=cache)
        primary = get_backend(cache).client
        waiting = await joined(primary, waiter, wait=30)
        assert await held.arelease()
        assert await waiting and await waiter.aowned() and await waiter.arelease()

    asyncio.run(main())


@ON_EACH_REDIS
def test_replicas_that_do_not_confirm_fail_an_async_acquire_closed(settings, alias, redis_server):
    """With ``REPLICAS`` the async face runs the sync adapter (its confirmation) in threads."""
    settings.TASKLOCK = {"REPLICAS": 1, "REPLICA_TIMEOUT": 0.05}

    async def main() -> None:
        assert type(async_backend(alias)) is ThreadedBackend
        held = Lock(unique(), timeout=5, cache=alias)
        with pytest.raises(LockError, match="0 of 1 replicas"):
            await held.aacquire()
        assert not held and not await held.alocked(), "the unconfirmed lock was released"

    asyncio.run(main())


def seen(condition, seconds: float) -> bool:
    """Whether ``condition()`` comes true within ``seconds``, checked without yielding to the
    event loop (so no task reads a reply meanwhile)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
    return True


@ON_EACH_REDIS
@pytest.mark.parametrize("blocking", [False, True])
def test_an_acquire_cut_off_after_the_server_took_the_lock_gives_it_back(alias, blocking, client):
    """Cancelled while the reply of its first command (``add``, or the line's first look) is on
    its way: the server took the lock for it, and its clean-up gives it back. (On Python 3.11
    redis-py's send, through ``asyncio.wait_for``, loses this cancellation; the driver still
    sees it requested and honours it.)"""

    async def main() -> None:
        taker = Lock(unique(), timeout=60, cache=alias)
        taking = asyncio.ensure_future(taker.aacquire(blocking=blocking))
        for _ in range(100):  # one loop iteration at a time, until the server has taken it
            await asyncio.sleep(0)
            if seen(lambda: client.exists(taker._key), 0.05):
                break
        assert not taking.done(), "the reply was read before the cancellation"
        taking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await taking
        assert not taker and not await taker.alocked(), "the cancelled acquire kept the lock"

    asyncio.run(main())
