"""Uncontended lock cycles (acquire + release) against the raw floor of each cache family.

The Redis floor is what a careful hand-written lock costs: a random token, ``SET NX PX``,
and a pre-registered Lua compare-and-delete. memcached's floor is a raw pymemcache ``add``
then ``gets`` + ``cas`` delete. The database has no raw floor here; its reference is
Django's own ``DatabaseCache.add`` + ``delete``, which is not safe as a lock (see DESIGN).
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass

from .measure import Cycle, Samples, Timer, interleaved, time_cycles

NAME = "bench:cycle"
TIMEOUT = 30
#: tasklock's target on Redis (issue 13): no dearer than the floor
REDIS_TARGET = 1.00
#: tasklock's target on memcached: at most this many times the floor's cost per cycle
TARGET_RATIO = 1.10
#: ``@task_lock`` on a plain function: at most this many times ``Lock``'s cycle on the same cache
DECORATOR_TARGET = 1.10
REPEATS = 25
BATCH_SECONDS = 0.08

COMPARE_AND_DELETE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Approach:
    label: str
    family: str
    #: True for the floor the family's ratios are taken against
    floor: bool
    #: whether release only removes the caller's own lock
    owner_checked: bool
    make: Callable[[], Cycle]
    #: the most ``ratio`` may be (tasklock's own rows), or None
    target: float | None = None
    #: the row whose cycle ``ratio`` is taken against; None: the family's floor
    against: str | None = None


def _redis_url() -> str:
    return f"redis://{os.environ['TASKLOCK_BENCH_REDIS']}/0"


def _redis_client():
    import redis

    return redis.Redis.from_url(_redis_url())


def _checked(result: object, what: str) -> None:
    if not result:
        raise RuntimeError(f"benchmark cycle failed: {what} returned {result!r}")


def redis_floor() -> Cycle:
    client = _redis_client()
    release = client.register_script(COMPARE_AND_DELETE)

    def cycle() -> None:
        token = secrets.token_hex(16)
        _checked(client.set(NAME, token, nx=True, px=TIMEOUT * 1000), "SET NX PX")
        _checked(release(keys=[NAME], args=[token]), "compare-and-delete")

    return cycle


def redis_py_lock() -> Cycle:
    client = _redis_client()

    def cycle() -> None:
        held = client.lock(NAME, timeout=TIMEOUT)
        _checked(held.acquire(blocking=False), "redis-py Lock.acquire")
        held.release()

    return cycle


def python_redis_lock() -> Cycle:
    import redis_lock

    client = _redis_client()

    def cycle() -> None:
        held = redis_lock.Lock(client, NAME, expire=TIMEOUT)
        _checked(held.acquire(blocking=False), "redis_lock.Lock.acquire")
        held.release()

    return cycle


def celery_once() -> Cycle:
    from celery_once.backends import Redis

    backend = Redis({"url": _redis_url(), "default_timeout": TIMEOUT})

    def cycle() -> None:
        backend.raise_or_lock(NAME, timeout=TIMEOUT)  # raises AlreadyQueued when held
        backend.clear_lock(NAME)

    return cycle


def django_add_delete(alias: str) -> Callable[[], Cycle]:
    def make() -> Cycle:
        from django.core.cache import caches

        cache = caches[alias]

        def cycle() -> None:
            _checked(cache.add(NAME, secrets.token_hex(16), TIMEOUT), f"{alias} cache.add")
            cache.delete(NAME)

        return cycle

    return make


def tasklock_lock(alias: str) -> Callable[[], Cycle]:
    def make() -> Cycle:
        from tasklock import Lock

        def cycle() -> None:
            held = Lock(NAME, TIMEOUT, cache=alias)
            _checked(held.acquire(), "tasklock Lock.acquire")
            _checked(held.release(), "tasklock Lock.release")

        return cycle

    return make


def tasklock_decorated(alias: str, key: str | None) -> Callable[[], Cycle]:
    """``@task_lock`` with its defaults (``on_locked``, ``renew``) on a plain function."""

    def make() -> Cycle:
        from tasklock import task_lock

        @task_lock(key, timeout=TIMEOUT, cache=alias)
        def body(game_id: int, force: bool = False) -> bool:
            return True

        def cycle() -> None:
            _checked(body(42, force=True), "task_lock body")

        return cycle

    return make


def decorated(label: str, alias: str, key: str | None, against: str) -> Approach:
    """A ``@task_lock`` row, judged against the ``Lock`` row ``against`` of the same cache."""
    return Approach(label, "redis", False, True, tasklock_decorated(alias, key), DECORATOR_TARGET, against)


def memcached_floor() -> Cycle:
    from pymemcache.client.base import Client

    host, _, port = os.environ["TASKLOCK_BENCH_MEMCACHED"].rpartition(":")
    client = Client((host, int(port)), default_noreply=False)

    def cycle() -> None:
        token = secrets.token_hex(16).encode()
        _checked(client.add(NAME, token, expire=TIMEOUT, noreply=False), "memcached add")
        value, cas = client.gets(NAME)
        _checked(value == token and client.cas(NAME, b"", cas, expire=-1, noreply=False), "gets+cas delete")

    return cycle


LOCK_DJANGO_REDIS = "tasklock Lock · django-redis"
LOCK_REDIS_CACHE = "tasklock Lock · Django RedisCache"
APPROACHES = (
    Approach("raw SET NX PX + Lua delete (floor)", "redis", True, True, redis_floor),
    Approach("redis-py Lock", "redis", False, True, redis_py_lock),
    Approach("python-redis-lock", "redis", False, True, python_redis_lock),
    Approach("celery-once Redis backend", "redis", False, False, celery_once),
    Approach("django-redis add+delete", "redis", False, False, django_add_delete("default")),
    Approach("Django RedisCache add+delete", "redis", False, False, django_add_delete("redis")),
    Approach(LOCK_DJANGO_REDIS, "redis", False, True, tasklock_lock("default"), REDIS_TARGET),
    Approach(LOCK_REDIS_CACHE, "redis", False, True, tasklock_lock("redis"), REDIS_TARGET),
    decorated('@task_lock("game_id") · django-redis', "default", "game_id", LOCK_DJANGO_REDIS),
    decorated("@task_lock() · django-redis", "default", None, LOCK_DJANGO_REDIS),
    decorated('@task_lock("game_id") · Django RedisCache', "redis", "game_id", LOCK_REDIS_CACHE),
    Approach("raw pymemcache add + gets/cas delete (floor)", "memcached", True, True, memcached_floor),
    Approach("Django PyMemcacheCache add+delete", "memcached", False, False, django_add_delete("memcached")),
    Approach(
        "tasklock Lock · PyMemcacheCache", "memcached", False, True, tasklock_lock("memcached"), TARGET_RATIO
    ),
    Approach("Django DatabaseCache add+delete", "database", True, False, django_add_delete("database")),
    Approach("tasklock Lock · DatabaseCache", "database", False, True, tasklock_lock("database")),
)  # fmt: skip


@dataclass(frozen=True)
class Row:
    approach: Approach
    per_second: float
    p50_us: float
    p99_us: float
    #: to the family's floor
    ratio: float
    #: to the row the target is set against (the floor unless ``approach.against``)
    judged: float

    @property
    def target_met(self) -> bool | None:
        target = self.approach.target
        return None if target is None else self.judged <= target


def run(
    repeats: int = REPEATS,
    seconds: float = BATCH_SECONDS,
    approaches: tuple[Approach, ...] = APPROACHES,
    timer: Timer = time_cycles,
) -> list[Row]:
    """Every approach, interleaved in this one process; ratios to the family's floor, and to
    the row a target is set against (``timer`` runs the cycles: bench/async_locks awaits them)."""
    cycles = {approach.label: approach.make() for approach in approaches}
    samples = interleaved(cycles, repeats, seconds, timer)
    floors: dict[str, Samples] = {a.family: samples[a.label] for a in approaches if a.floor}
    rows = []
    for a in approaches:
        s, floor = samples[a.label], floors[a.family]
        ratio = s.ratio_to(floor)
        judged = ratio if a.against is None else s.ratio_to(samples[a.against])
        rows.append(Row(a, s.per_second, s.p50_us, s.p99_us, ratio, judged))
    return rows


def profile(label: str, count: int = 5000) -> None:
    """Print a pyinstrument profile of ``count`` cycles of one approach."""
    from pyinstrument import Profiler

    (approach,) = [a for a in APPROACHES if a.label == label]
    cycle = approach.make()
    cycle()
    with Profiler(interval=0.0001) as profiler:
        for _ in range(count):
            cycle()
    profiler.print(file=sys.stdout, show_all=False)
