"""``limit=N`` (issue 19): what a limited name costs beside tasklock's ``limit=1`` lock.

The uncontended cycle (acquire + release, one process) of a ``limit=3`` name, interleaved
with tasklock's ``limit=1`` cycle and the family's floor of bench/locks.py; the target is set
against the ``limit=1`` row of the same cache. Then contention: ``PROCESSES`` processes
(started once, serving every approach) each do ``GRANTS`` x (blocking acquire, hold ``HOLD``,
release), either all on one name with ``limit=SLOTS``, or ``SLOTS`` independent ``limit=1``
names with ``PROCESSES / SLOTS`` processes each (the reference: what ``SLOTS`` plain locks
give). Slot utilisation is the sum of the holds over ``SLOTS`` x the wall time (first acquire
called to last release done, over every process). A sweep over the holds checks every round:
never more than ``SLOTS`` at once, never two on one ``limit=1`` name.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import locks
from .measure import percentile

LIMIT = 3
#: the issue's target: a ``limit=N`` cycle on Redis at most this many times ``limit=1``'s
CYCLE_TARGET = 1.10

SLOTS = 4
PROCESSES = 16
GRANTS = 30
HOLD = 0.002
REPEATS = 3
WAIT = 30
LOCK_TIMEOUT = 60
LEAD = 0.3
WARM_UP_GRANTS = 3
#: the issue's target: ``limit=SLOTS``'s slot utilisation at least this share of the reference's
UTILISATION_TARGET = 0.9

#: one acquire, hold, release: (acquire called, acquired, released), monotonic
Event = tuple[float, float, float]


def tasklock_limited(alias: str, limit: int) -> Callable[[], locks.Cycle]:
    def make() -> locks.Cycle:
        from tasklock import Lock

        def cycle() -> None:
            held = Lock(locks.NAME, locks.TIMEOUT, cache=alias, limit=limit)
            locks._checked(held.acquire(), f"tasklock Lock(limit={limit}).acquire")
            locks._checked(held.release(), f"tasklock Lock(limit={limit}).release")

        return cycle

    return make


def _plain(cache: str) -> str:
    return f"tasklock Lock · {cache}"


def _limited(cache: str) -> str:
    return f"tasklock Lock limit={LIMIT} · {cache}"


def _approaches() -> tuple[locks.Approach, ...]:
    by_label = {a.label: a for a in locks.APPROACHES}
    rows: list[locks.Approach] = []
    redis = (("default", "django-redis"), ("redis", "Django RedisCache"))
    for family, floor, caches in (
        ("redis", "raw SET NX PX + Lua delete (floor)", redis),
        ("memcached", "raw pymemcache add + gets/cas delete (floor)", (("memcached", "PyMemcacheCache"),)),
        ("database", "Django DatabaseCache add+delete", (("database", "DatabaseCache"),)),
    ):
        rows.append(by_label[floor])
        for alias, cache in caches:
            plain = by_label[_plain(cache)]
            rows.append(locks.Approach(plain.label, family, False, True, plain.make))
            target = CYCLE_TARGET if family == "redis" else None
            limited = tasklock_limited(alias, LIMIT)
            rows.append(locks.Approach(_limited(cache), family, False, True, limited, target, plain.label))
    return tuple(rows)


def cycles(repeats: int = locks.REPEATS) -> list[locks.Row]:
    """The uncontended cycles: ``limit=LIMIT`` beside ``limit=1`` and the floor, interleaved."""
    return locks.run(repeats=repeats, approaches=_approaches())


# -- contention ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    label: str
    alias: str
    #: True: one name with ``limit=SLOTS``; False: ``SLOTS`` names with ``limit=1``
    limited: bool


CACHES = (("default", "django-redis"), ("memcached", "PyMemcacheCache"), ("database", "DatabaseCache"))
MODES = tuple(
    Mode(f"{'one name, limit=4' if limited else '4 names, limit=1'} · {cache}", alias, limited)
    for alias, cache in CACHES
    for limited in (True, False)
)


def _contend(mode: Mode, name: str, limit: int) -> Event:
    from tasklock import Lock

    held = Lock(name, LOCK_TIMEOUT, cache=mode.alias, limit=limit)
    started = time.monotonic()
    if not held.acquire(blocking=True, wait=WAIT):
        raise RuntimeError(f"{mode.label}: no slot within {WAIT} s")
    acquired = time.monotonic()
    time.sleep(HOLD)
    ended = time.monotonic()
    if not held.release():
        raise RuntimeError(f"{mode.label}: the slot was lost while held")
    return started, acquired, ended


def _contender(pipe, number: int) -> None:
    """One contending process (the ``number``-th): for each command, ``grants`` holds from ``start``."""
    from .environment import setup_django

    setup_django()
    from tasklock import Lock

    while (command := pipe.recv()) is not None:
        index, name, grants, start = command
        mode = MODES[index]
        if mode.limited:
            name, limit = f"{name}:limited", SLOTS
        else:
            name, limit = f"{name}:{number % SLOTS}", 1
        warm_up = Lock(name, 5, cache=mode.alias, limit=limit)  # connections, scripts: untimed
        if warm_up.acquire():
            warm_up.release()
        while time.monotonic() < start:
            pass
        pipe.send([_contend(mode, name, limit) for _ in range(grants)])


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most holds at one instant (touching holds do not overlap)."""
    held = most = 0
    for _, delta in sorted((t, d) for s, e in spans for t, d in ((s, 1), (e, -1))):
        held += delta
        most = max(most, held)
    return most


def _checked(mode: Mode, per_process: list[list[Event]]) -> None:
    if mode.limited:
        groups = [[(a, e) for events in per_process for _, a, e in events]]
        allowed = SLOTS
    else:
        groups = [
            [(a, e) for number, events in enumerate(per_process) if number % SLOTS == n for _, a, e in events]
            for n in range(SLOTS)
        ]
        allowed = 1
    if (most := max(most_at_once(group) for group in groups)) > allowed:
        raise RuntimeError(f"{mode.label}: {most} holders at once, {allowed} allowed")


def slot_utilisation(events: list[Event]) -> float:
    wall = max(e[2] for e in events) - min(e[0] for e in events)
    return sum(e[2] - e[1] for e in events) / (SLOTS * wall)


@dataclass(frozen=True)
class ContentionRow:
    mode: Mode
    utilisations: list[float]
    waits: list[float]

    @property
    def utilisation(self) -> float:
        return statistics.median(self.utilisations)

    def wait_ms(self, q: float) -> float:
        return percentile(self.waits, q) * 1000


def contention(repeats: int = REPEATS, grants: int = GRANTS) -> list[ContentionRow]:
    """Every mode, ``repeats`` times in a rotated order, in the same ``PROCESSES`` processes."""
    context = multiprocessing.get_context("spawn")
    pipes, workers = [], []
    for number in range(PROCESSES):
        ours, theirs = context.Pipe()
        pipes.append(ours)
        workers.append(context.Process(target=_contender, args=(theirs, number), daemon=True))
    for worker in workers:
        worker.start()

    def round_of(index: int, name: str, count: int) -> list[list[Event]]:
        start = time.monotonic() + LEAD
        for pipe in pipes:
            pipe.send((index, name, count, start))
        return [pipe.recv() for pipe in pipes]

    found: dict[int, tuple[list[float], list[float]]] = {i: ([], []) for i in range(len(MODES))}
    run = os.getpid()
    try:
        for index in range(len(MODES)):
            round_of(index, f"bench:limits:{run}:warm-up:{index}", WARM_UP_GRANTS)
        for repeat in range(repeats):
            shift = repeat % len(MODES)
            order = list(range(len(MODES)))
            for index in order[shift:] + order[:shift]:
                per_process = round_of(index, f"bench:limits:{run}:{repeat}:{index}", grants)
                _checked(MODES[index], per_process)
                events = [event for events in per_process for event in events]
                shares, waits = found[index]
                shares.append(slot_utilisation(events))
                waits.extend(acquired - started for started, acquired, _ in events)
    finally:
        for pipe in pipes:
            pipe.send(None)
        for worker in workers:
            worker.join(30)
    return [ContentionRow(mode, *found[index]) for index, mode in enumerate(MODES)]


def reference(rows: list[ContentionRow], row: ContentionRow) -> ContentionRow | None:
    """The ``4 names, limit=1`` row of a ``limit=4`` row's cache."""
    if not row.mode.limited:
        return None
    return next(r for r in rows if r.mode.alias == row.mode.alias and not r.mode.limited)


def ratio(rows: list[ContentionRow], row: ContentionRow) -> float | None:
    """``limit=4``'s utilisation over the reference's, repeat by repeat; the median of those."""
    against = reference(rows, row)
    if against is None:
        return None
    pairs = zip(row.utilisations, against.utilisations, strict=True)
    return statistics.median(a / b for a, b in pairs)
