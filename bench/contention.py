"""Contention: N processes take one lock name in turn, as fast as the lock lets them.

Every process does ``GRANTS`` x (blocking acquire, hold ``HOLD`` seconds, release) on one
name. Utilisation is the share of the wall time (first acquire called to last release done)
the lock spends held by a body: the sum of the measured holds over the wall time. Waits are
acquire-call-to-acquired, per grant; CPU is what the contending processes spent per grant
(waiting, polling, taking, releasing). The processes are started once and serve every
approach; within a repeat, approaches take turns in a rotated order for each N.
Times are ``time.monotonic()``, one clock for every process on Linux.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .handoff import Event, raw_retry_loop, redis_client
from .measure import percentile

COUNTS = (4, 8, 16, 32)
GRANTS = 30
HOLD = 0.002
REPEATS = 2
#: the longest any process blocks before it gives up (and the bench fails)
WAIT = 30
LOCK_TIMEOUT = 60
#: tasklock's targets: utilisation, and the fair mode's worst wait over N x hold
TARGET_UTILISATION = 0.90
FAIR_MAX_WAIT_HOLDS = 2.0
#: how far ahead of now a round's start time is set, so that every process is ready
LEAD = 0.3
#: grants per process in the untimed round that first takes each approach through its
#: contended path (a process's first BLPOP, grant, poll: cold code)
WARM_UP_GRANTS = 3

#: a contender takes the lock of the name it is given once: an ``Event``
Contender = Callable[[str], Event]


@dataclass(frozen=True)
class Approach:
    label: str
    family: str
    how: str
    make: Callable[[], Contender]
    #: "utilisation" for tasklock's default mode, "fair" for its fair mode, "" for the peers
    target: str = ""


def _held(started: float) -> Event:
    acquired = time.monotonic()
    time.sleep(HOLD)
    return started, acquired, time.monotonic()


def _gave_up(who: str) -> RuntimeError:
    return RuntimeError(f"{who} waited {WAIT} s in vain")


def raw_floor() -> Contender:
    """A random token, ``SET NX PX`` retried every millisecond, a Lua compare-and-delete."""
    return raw_retry_loop(_held, LOCK_TIMEOUT, WAIT)


def redis_py_lock() -> Contender:
    client = redis_client()

    def contend(name: str) -> Event:
        held = client.lock(name, timeout=LOCK_TIMEOUT, blocking_timeout=WAIT)
        started = time.monotonic()
        if not held.acquire(blocking=True):
            raise _gave_up("redis-py Lock")
        event = _held(started)
        held.release()
        return event

    return contend


def python_redis_lock() -> Contender:
    import redis_lock

    client = redis_client()

    def contend(name: str) -> Event:
        held = redis_lock.Lock(client, name, expire=LOCK_TIMEOUT)
        started = time.monotonic()
        if not held.acquire(blocking=True, timeout=WAIT):
            raise _gave_up("python-redis-lock")
        event = _held(started)
        held.release()
        return event

    return contend


def tasklock_lock(alias: str, fair: bool = False) -> Callable[[], Contender]:
    def make() -> Contender:
        from tasklock import Lock

        options = {"fair": True} if fair else {}

        def contend(name: str) -> Event:
            held = Lock(name, LOCK_TIMEOUT, cache=alias, **options)
            started = time.monotonic()
            if not held.acquire(blocking=True, wait=WAIT):
                raise _gave_up(f"tasklock on {alias}")
            event = _held(started)
            held.release()
            return event

        return contend

    return make


HANDED = "handed over by the release"
APPROACHES = (
    Approach("raw SET NX PX, retried every 1 ms (floor)", "redis", "polls 1 ms", raw_floor),
    Approach("redis-py Lock", "redis", "polls 0.1 s", redis_py_lock),
    Approach("python-redis-lock", "redis", "BLPOP, then SET NX", python_redis_lock),
    Approach("tasklock · django-redis", "redis", HANDED, tasklock_lock("default"), "utilisation"),
    Approach("tasklock · Django RedisCache", "redis", HANDED, tasklock_lock("redis"), "utilisation"),
    Approach("tasklock fair · django-redis", "redis", HANDED, tasklock_lock("default", True), "fair"),
    Approach("tasklock fair · Django RedisCache", "redis", HANDED, tasklock_lock("redis", True), "fair"),
    Approach("tasklock · PyMemcacheCache", "memcached", "polls, backoff", tasklock_lock("memcached")),
    Approach("tasklock · DatabaseCache", "database", "polls, backoff", tasklock_lock("database")),
)  # fmt: skip


def _contender_process(pipe) -> None:
    """One contending process: for each command, take the lock ``grants`` times from ``start``."""
    from .environment import setup_django

    setup_django()
    contenders: dict[int, Contender] = {}
    while (command := pipe.recv()) is not None:
        index, name, grants, start = command
        contend = contenders.get(index) or contenders.setdefault(index, APPROACHES[index].make())
        contend(f"{name}:warm-up:{os.getpid()}")  # connections and scripts, before the clock starts
        while time.monotonic() < start:
            pass
        cpu = time.process_time()
        events = [contend(name) for _ in range(grants)]
        pipe.send((events, time.process_time() - cpu))


@dataclass(frozen=True)
class Row:
    approach: Approach
    processes: int
    #: per repeat: the sum of the holds over the wall time
    utilisations: list[float]
    waits: list[float]
    #: the CPU time the contending processes spent, over the grants
    cpu_per_grant: float

    @property
    def utilisation(self) -> float:
        return sorted(self.utilisations)[len(self.utilisations) // 2]

    def wait_ms(self, q: float) -> float:
        return percentile(self.waits, q) * 1000

    @property
    def max_wait_ms(self) -> float:
        return max(self.waits) * 1000

    @property
    def target_met(self) -> bool | None:
        if self.approach.target == "utilisation":
            return self.utilisation >= TARGET_UTILISATION
        if self.approach.target == "fair":
            return self.max_wait_ms <= FAIR_MAX_WAIT_HOLDS * self.processes * HOLD * 1000
        return None


def utilisation(events: list[Event]) -> float:
    """The share of the wall time the lock was held by a body."""
    wall = max(e[2] for e in events) - min(e[0] for e in events)
    return sum(e[2] - e[1] for e in events) / wall


def overlaps(per_process: list[list[Event]]) -> int:
    """Holds of different processes that intersect: must be 0 for any lock worth the name."""
    spans = sorted((e[1], e[2], owner) for owner, events in enumerate(per_process) for e in events)
    found = 0
    for (_, end, owner), (start, _, other) in itertools.pairwise(spans):
        found += start < end and owner != other
    return found


def _round(pipes: list[Any], index: int, name: str, grants: int) -> list[tuple[list[Event], float]]:
    """One round of approach ``index`` in the processes behind ``pipes``: their events and CPU."""
    start = time.monotonic() + LEAD
    for pipe in pipes:
        pipe.send((index, name, grants, start))
    return [pipe.recv() for pipe in pipes]


def run(
    counts: tuple[int, ...] = COUNTS,
    repeats: int = REPEATS,
    grants: int = GRANTS,
    labels: set[str] | None = None,
) -> list[Row]:
    """Every approach (or those in ``labels``) at every N, ``repeats`` times."""
    chosen = [i for i, a in enumerate(APPROACHES) if labels is None or a.label in labels]
    context = multiprocessing.get_context("spawn")
    pipes, workers = [], []
    for _ in range(max(counts)):
        ours, theirs = context.Pipe()
        pipes.append(ours)
        workers.append(context.Process(target=_contender_process, args=(theirs,), daemon=True))
    for worker in workers:
        worker.start()
    found: dict[tuple[int, int], tuple[list[float], list[float], list[float]]] = {}
    try:
        for index in chosen:  # every process through the contended path once, untimed
            _round(pipes, index, f"bench:contention:warm-up:{index}", WARM_UP_GRANTS)
        for repeat in range(repeats):
            for count in counts:
                order = chosen
                shift = (repeat + count) % len(order)
                for index in order[shift:] + order[:shift]:
                    replies = _round(
                        pipes[:count], index, f"bench:contention:{repeat}:{count}:{index}", grants
                    )
                    per_process = [events for events, _ in replies]
                    if overlapping := overlaps(per_process):
                        raise RuntimeError(f"{APPROACHES[index].label}: {overlapping} overlapping holds")
                    events = [event for events in per_process for event in events]
                    shares, waits, cpu = found.setdefault((index, count), ([], [], []))
                    shares.append(utilisation(events))
                    waits.extend(acquired - started for started, acquired, _ in events)
                    cpu.append(sum(seconds for _, seconds in replies) / len(events))
    finally:
        for pipe in pipes:
            pipe.send(None)
        for worker in workers:
            worker.join(30)
    rows = []
    for count in counts:
        for index in chosen:
            shares, waits, cpu = found[index, count]
            rows.append(Row(APPROACHES[index], count, shares, waits, sorted(cpu)[len(cpu) // 2]))
    return rows
