"""Redis at scale, side by side in one run: ``python -m bench.scale [--quick]``.

- acquire + release on a 3-primary cluster (django-redis with tasklock.contrib's cluster
  client) vs one Redis (django-redis), interleaved;
- ``REPLICAS=1`` vs ``REPLICAS=0`` on a primary with one replica (``SET`` + ``WAIT`` pipelined);
- ``held_locks()`` of 100,000 locks on one Redis and across the 3 primaries (goal ≤ 2 s / ≤ 3 s);
- handoff to a blocked waiter (another process): release → the waiter holds it, p50.

Starts its own servers (tests/servers.py) on free loopback ports and stops them at the end.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable

import django
from django.conf import settings

from tests import servers

PREFIX = "bench-scale"
LISTED = 100_000
LISTING_GOALS = {"one Redis": 2.0, "cluster, 3 primaries": 3.0}
WRITE_BATCH = 2000


def configure(single: int, cluster: list[int], primary: int) -> None:
    settings.configure(
        SECRET_KEY="tasklock-bench-scale",
        USE_TZ=True,
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "tasklock"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        CACHES={
            "single": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": f"redis://127.0.0.1:{single}/0",
            },
            "cluster": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": ",".join(f"redis://127.0.0.1:{port}" for port in cluster),
                "OPTIONS": {"CLIENT_CLASS": "tasklock.contrib.redis_cluster.DjangoRedisClusterClient"},
            },
            "replicated": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": f"redis://127.0.0.1:{primary}/0",
            },
        },
        TASKLOCK={"KEY_PREFIX": PREFIX},
    )
    django.setup()


def cycle_us(cycles: dict[str, Callable[[], object]], count: int, repeats: int) -> dict[str, float]:
    """Median µs per call of each cycle, the cycles interleaved repeat by repeat."""
    timings: dict[str, list[int]] = {label: [] for label in cycles}
    for _ in range(repeats):
        for label, cycle in cycles.items():
            for _ in range(count):
                started = time.perf_counter_ns()
                cycle()
                timings[label].append(time.perf_counter_ns() - started)
    return {label: statistics.median(values) / 1000 for label, values in timings.items()}


def lock_cycle(lock) -> Callable[[], None]:
    def cycle() -> None:
        if not lock.acquire():
            raise AssertionError(f"{lock!r} was not free")
        lock.release()

    return cycle


def fill(alias: str, count: int) -> None:
    """Hold ``count`` locks in ``alias``, stored as ``Lock.acquire`` stores them."""
    from tasklock.backends import get_backend
    from tasklock.values.holder import Holder

    backend = get_backend(alias)
    now = time.time()
    for start in range(0, count, WRITE_BATCH):
        pipe = backend.client.pipeline(transaction=False) if backend.fences else backend.client.pipeline()
        for n in range(start, min(start + WRITE_BATCH, count)):
            name = f"bench.tasks.update_game:{n}"
            value = Holder.here(f"{n:032x}", name, now, 3600, "bench.tasks.update_game", str(n)).encode()
            pipe.set(backend.key(name), value, px=3_600_000)
        pipe.execute()


def listing_seconds(alias: str, repeats: int) -> float:
    import tasklock

    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        listed = sum(1 for _ in tasklock.held_locks(cache=alias))
        times.append(time.perf_counter() - started)
        assert listed == LISTED, f"{alias}: listed {listed}, expected {LISTED}"
    return statistics.median(times)


def _waiter(alias: str, name: str, connection) -> None:
    """A process that, on each "go", blocks on ``name`` and answers when it got it."""
    from tasklock import Lock

    while connection.recv() == "go":
        waiter = Lock(name, timeout=30, cache=alias)
        assert waiter.acquire(blocking=True, wait=30)
        acquired = time.monotonic()
        waiter.release()
        connection.send(acquired)


def handoff_ms(alias: str, rounds: int) -> list[float]:
    """Release → a blocked waiter in another process holds the lock, per round (ms)."""
    from tasklock import Lock
    from tasklock.backends import get_backend

    name = f"handoff:{alias}"
    backend = get_backend(alias)
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.get_context("fork").Process(target=_waiter, args=(alias, name, theirs))
    process.start()
    results = []
    try:
        for _ in range(rounds):
            held = Lock(name, timeout=30, cache=alias)
            assert held.acquire()
            ours.send("go")
            tickets = backend.companions(held._key)[2]
            while not backend.client.exists(tickets):  # the waiter is in line: it blocks
                time.sleep(0.0005)
            time.sleep(0.005)  # into its BLPOP
            released = time.monotonic()
            held.release()
            results.append((ours.recv() - released) * 1000)
    finally:
        ours.send("stop")
        process.join(10)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    quick = parser.parse_args(argv).quick
    count, repeats, rounds = (300, 3, 15) if quick else (1000, 7, 40)
    started: list = []
    try:
        single = servers.start_redis(servers.free_port())
        started.append(single)
        cluster = servers.start_redis_cluster([servers.free_port() for _ in range(3)])
        started.append(cluster)
        replicated = servers.start_sentinel_group([servers.free_port() for _ in range(3)])
        started.append(replicated)
        configure(single.port, cluster.ports, replicated.ports[0])
        from django.test import override_settings

        from tasklock import Lock

        versions = f"Python {sys.version.split()[0]}, Django {django.__version__}, Redis 3 primaries"
        print(f"tasklock at scale ({versions}); medians, cycles interleaved\n")
        plain = cycle_us(
            {
                "one Redis": lock_cycle(Lock("cycle", timeout=30, cache="single")),
                "cluster, 3 primaries": lock_cycle(Lock("cycle", timeout=30, cache="cluster")),
            },
            count,
            repeats,
        )
        with override_settings(TASKLOCK={"KEY_PREFIX": PREFIX, "REPLICAS": 1}):
            confirmed = Lock("cycle", timeout=30, cache="replicated")  # keeps its adapter
        unconfirmed = Lock("cycle", timeout=30, cache="replicated")
        replicas = cycle_us(
            {"REPLICAS=0": lock_cycle(unconfirmed), "REPLICAS=1": lock_cycle(confirmed)}, count, repeats
        )
        print("acquire + release, µs p50")
        for label, value in {**plain, **replicas}.items():
            print(f"  {label:<24}{value:>9.1f}")
        print(f"  cluster / one Redis      {plain['cluster, 3 primaries'] / plain['one Redis']:>9.2f}x")
        print(f"  REPLICAS=1 - REPLICAS=0  {replicas['REPLICAS=1'] - replicas['REPLICAS=0']:>+9.1f} µs")

        print("\nhandoff to a blocked waiter in another process, ms")
        for label, alias in (("one Redis", "single"), ("cluster, 3 primaries", "cluster")):
            times = handoff_ms(alias, rounds)
            print(f"  {label:<24}p50 {statistics.median(times):6.2f}   max {max(times):6.2f}")

        print(f"\nheld_locks() of {LISTED:,} locks, s (goal)")
        missed = 0
        for label, alias in (("one Redis", "single"), ("cluster, 3 primaries", "cluster")):
            fill(alias, LISTED)
            took = listing_seconds(alias, 1 if quick else 3)
            goal = LISTING_GOALS[label]
            missed += took > goal
            print(f"  {label:<24}{took:>7.2f}  (≤ {goal:g} s: {'met' if took <= goal else 'MISSED'})")
        return 1 if missed else 0
    finally:
        for server in reversed(started):
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
