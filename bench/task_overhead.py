"""A Celery task undecorated, wrapped in the raw floor lock, and under ``@task_lock``: end to
end on a real prefork worker (2 processes, Redis broker).

Each batch is published to a staging list the worker does not read, then handed to the
worker's queue with one ``RENAME``, so publishing never overlaps consuming. Tasks are
``acks_late``: the batch is done when the queue and kombu's ``unacked`` hash are both empty.
Batches of the three variants alternate; overheads are taken batch against batch.

This module is also the worker's Celery app (``celery -A bench.task_overhead worker``).
"""

from __future__ import annotations

import functools
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from celery import Celery

from tasklock import task_lock
from tests.servers import Server

from .locks import COMPARE_AND_DELETE

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

app = Celery("tasklock_bench")
app.config_from_object("django.conf:settings", namespace="CELERY")

QUEUE = "tasklock-bench"
STAGING = "tasklock-bench-staging"
CONCURRENCY = 2
LOCK_TIMEOUT = 60
#: tasklock's overhead may be at most this many times the raw lock's, measured in the same run
TARGET_RATIO = 1.10
#: the issue's first target, below what any lock round trip costs on a no-op task (%)
ISSUE_TARGET_PERCENT = 5.0
#: (task body seconds, tasks per batch, repeats)
WORKLOADS = ((0.0, 400, 15), (0.010, 100, 7))


@functools.cache
def _floor_lock():
    """This worker child's redis-py client and registered compare-and-delete script."""
    import redis

    client = redis.Redis.from_url(f"redis://{os.environ['TASKLOCK_BENCH_REDIS']}/0")
    return client, client.register_script(COMPARE_AND_DELETE)


@app.task(acks_late=True)
def plain(i: int, seconds: float) -> None:
    if seconds:
        time.sleep(seconds)


@app.task(acks_late=True)
def raw_locked(i: int, seconds: float) -> None:
    client, release = _floor_lock()
    name, token = f"bench:task:{i}", secrets.token_hex(16)
    if not client.set(name, token, nx=True, px=LOCK_TIMEOUT * 1000):
        return
    try:
        if seconds:
            time.sleep(seconds)
    finally:
        release(keys=[name], args=[token])


@app.task(acks_late=True)
@task_lock(timeout=LOCK_TIMEOUT, on_locked="skip")
def tasklocked(i: int, seconds: float) -> None:
    if seconds:
        time.sleep(seconds)


VARIANTS = {"undecorated": plain, "raw floor lock": raw_locked, "@task_lock": tasklocked}


def _broker():
    import redis

    return redis.Redis.from_url(app.conf.broker_url)


def _drained(broker, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        pipe = broker.pipeline(transaction=False)
        pipe.llen(QUEUE)
        pipe.hlen("unacked")
        if pipe.execute() == [0, 0]:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the worker left tasks undone after {timeout} s")
        time.sleep(0.002)


def _batch(broker, task, count: int, seconds: float) -> float:
    """Tasks per second of one batch, from hand-over to the last ack."""
    for i in range(count):
        task.apply_async((i, seconds), queue=STAGING)
    started = time.monotonic()
    broker.rename(STAGING, QUEUE)
    _drained(broker)
    return count / (time.monotonic() - started)


@contextmanager
def worker() -> Iterator[None]:
    """A prefork worker with ``CONCURRENCY`` processes on the bench's Redis broker."""
    directory = tempfile.mkdtemp(prefix="tasklock-bench-worker-")
    with open(os.path.join(directory, "worker.log"), "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "bench.task_overhead", "worker", "--pool=prefork",
             f"--concurrency={CONCURRENCY}", f"--queues={QUEUE}", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "--loglevel=warning", f"--hostname=bench-{os.getpid()}@%h"],
            stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(),
        )  # fmt: skip
        server = Server("celery worker", 0, process, directory)
        try:
            plain.apply_async((0, 0.0), queue=QUEUE)
            _drained(_broker(), timeout=60)
            yield
        finally:
            server.stop()


@dataclass(frozen=True)
class Row:
    seconds: float
    variant: str
    per_second: float
    #: throughput lost against the undecorated task, median over repeats (%)
    overhead: float


@dataclass(frozen=True)
class Workload:
    seconds: float
    rows: list[Row]

    def overhead(self, variant: str) -> float:
        return next(row.overhead for row in self.rows if row.variant == variant)

    @property
    def ratio(self) -> float:
        """tasklock's overhead over the raw lock's (the 1.10x target)."""
        return self.overhead("@task_lock") / self.overhead("raw floor lock")


def _workload(broker, seconds: float, count: int, repeats: int) -> Workload:
    names = list(VARIANTS)
    for task in VARIANTS.values():  # warm-up: imports, connections, scripts in both children
        _batch(broker, task, count // 4, seconds)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            rates[name].append(_batch(broker, VARIANTS[name], count, seconds))
    rows = []
    for name in names:
        losses = [
            100 * (1 - mine / base) for mine, base in zip(rates[name], rates["undecorated"], strict=True)
        ]
        rows.append(Row(seconds, name, statistics.median(rates[name]), statistics.median(losses)))
    return Workload(seconds, rows)


def run(workloads: tuple[tuple[float, int, int], ...] = WORKLOADS) -> list[Workload]:
    broker = _broker()
    with worker():
        return [_workload(broker, seconds, count, repeats) for seconds, count, repeats in workloads]
