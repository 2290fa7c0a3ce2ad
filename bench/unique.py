"""Enqueue-time uniqueness on the Redis broker (issue 11): what the queue lock costs a
publish, and what a burst of duplicates puts on the broker.

1. ``delay()`` of a unique task (every call a new key, so every call publishes) against a
   plain ``delay()``, batches alternating in one run: µs per publish and the ratio.
2. 10,000 ``delay()`` of one key from 8 processes at once: messages on the broker (LLEN of
   the queue; no worker consumes it) and the wall time.

``python -m bench.unique [--batch N] [--repeats N]``
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time
import uuid

from celery import Celery

from tasklock import task_lock
from tasklock.celery import UniqueTask

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

app = Celery("tasklock_bench_unique")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_default_queue = QUEUE = "tasklock-bench-unique"

PROCESSES = 8
DUPLICATES = 10_000
#: the issue's goal: a unique publish costs at most this many plain publishes
TARGET_RATIO = 1.3


@app.task(name="bench.unique.plain")  # named: `python -m` runs this module as __main__
def plain(item: str) -> None: ...


@app.task(name="bench.unique.unique", base=UniqueTask)
@task_lock(key="item", timeout=600, unique="until_executed")
def unique(item: str) -> None: ...


def _broker():
    import redis

    return redis.Redis.from_url(app.conf.broker_url)


def _per_publish(task, count: int) -> float:
    """µs per ``delay()`` of ``count`` calls with fresh keys."""
    items = [uuid.uuid4().hex for _ in range(count)]
    started = time.perf_counter()
    for item in items:
        task.delay(item)
    return (time.perf_counter() - started) / count * 1e6


def publish_overhead(batch: int, repeats: int) -> dict[str, float]:
    plain.delay("warm-up"), unique.delay(uuid.uuid4().hex)
    plains, uniques = [], []
    for _ in range(repeats):
        plains.append(_per_publish(plain, batch))
        uniques.append(_per_publish(unique, batch))
        _broker().delete(QUEUE)
    ratios = [u / p for u, p in zip(uniques, plains, strict=True)]
    return {
        "plain µs": statistics.median(plains),
        "unique µs": statistics.median(uniques),
        "ratio": statistics.median(ratios),
    }


def _publisher(item: str, count: int, start_at: float, ids) -> None:
    from .environment import setup_django

    setup_django()
    unique.delay(uuid.uuid4().hex)  # connect before the start
    while time.time() < start_at:
        time.sleep(0.0005)
    ids.extend({unique.delay(item).id for _ in range(count)})


def duplicate_burst() -> dict[str, float]:
    _broker().delete(QUEUE)
    item = uuid.uuid4().hex
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        ids = manager.list()
        start_at = time.time() + 3
        processes = [
            context.Process(target=_publisher, args=(item, DUPLICATES // PROCESSES, start_at, ids))
            for _ in range(PROCESSES)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        took = time.time() - start_at
        distinct = len(set(ids))
    on_broker = _broker().llen(QUEUE) - PROCESSES  # each process's warm-up call published one
    return {"messages": on_broker, "distinct ids": distinct, "seconds": took}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.unique", description=__doc__)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    options = parser.parse_args(argv)
    from .environment import servers

    with servers():
        overhead = publish_overhead(options.batch, options.repeats)
        print("\n== delay() per publish on the Redis broker (median of batches, same run)")
        print(
            f"plain {overhead['plain µs']:.0f} µs, unique {overhead['unique µs']:.0f} µs: "
            f"{overhead['ratio']:.2f}x (goal <= {TARGET_RATIO}x)",
            flush=True,
        )
        burst = duplicate_burst()
        print(f"\n== {DUPLICATES:,} duplicate delay()s of one key from {PROCESSES} processes")
        print(
            f"messages on the broker: {burst['messages']} (goal 1), distinct task ids returned: "
            f"{burst['distinct ids']}, time: {burst['seconds']:.2f} s "
            f"({burst['seconds'] / DUPLICATES * 1e6:.0f} µs per call overall)",
            flush=True,
        )


if __name__ == "__main__":
    main()
