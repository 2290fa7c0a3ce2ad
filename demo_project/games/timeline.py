"""What a demo run records in Redis while its tasks run, and the figures drawn from it.

The demo command starts its workers with ``TASKLOCK_DEMO_RUN`` in their environment; a
worker started any other way records nothing. Each task body records the span during
which it ran (``time.monotonic()``, one clock for every process on Linux), so the most
bodies that ever ran at once for a game is measured independently of the lock itself.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from django.conf import settings

RUN_VARIABLE = "TASKLOCK_DEMO_RUN"


class Timeline:
    """One demo run's records, under ``<DEMO_KEY_PREFIX>:run:<run_id>:`` in Redis."""

    def __init__(self, url: str, run_id: str) -> None:
        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.run_id = run_id
        self.prefix = f"{settings.DEMO_KEY_PREFIX}:run:{run_id}:"

    @classmethod
    def of_this_worker(cls) -> Timeline | None:
        """The run this worker was started for by ``manage.py demo``, if any."""
        run_id = os.environ.get(RUN_VARIABLE)
        return cls(settings.REDIS_URL, run_id) if run_id else None

    @contextmanager
    def holding(self, lock_name: str, who: str) -> Iterator[None]:
        """Record that ``who`` runs a body that needs ``lock_name``, from start to end."""
        self.client.hset(self.prefix + "holding", lock_name, who)
        started = time.monotonic()
        try:
            yield
        finally:
            ended = time.monotonic()
            self.client.rpush(self.prefix + "spans", json.dumps([lock_name, started, ended]))
            self.client.hdel(self.prefix + "holding", lock_name)

    def contended(self, lock_name: str, policy: str) -> None:
        self.client.hincrby(self.prefix + "contended", f"{policy}|{lock_name}", 1)

    def spans(self) -> dict[str, list[tuple[float, float]]]:
        by_lock: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for item in self.client.lrange(self.prefix + "spans", 0, -1):
            lock_name, started, ended = json.loads(item)
            by_lock[lock_name].append((started, ended))
        return by_lock

    def contentions(self) -> Counter[tuple[str, str]]:
        """``(policy, lock name)`` → how many times a task found that lock held."""
        counts: Counter[tuple[str, str]] = Counter()
        for field, count in self.client.hgetall(self.prefix + "contended").items():
            policy, _, lock_name = field.partition("|")
            counts[policy, lock_name] = int(count)
        return counts

    def holding_now(self) -> dict[str, str]:
        return self.client.hgetall(self.prefix + "holding")

    def delete(self) -> None:
        """Remove this run's records (only keys under its own prefix)."""
        self.client.delete(*(self.prefix + part for part in ("holding", "spans", "contended")))


def most_at_once(spans: Iterable[tuple[float, float]]) -> int:
    """The most spans open at the same instant (an end and a start at one instant: no overlap)."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def count_contention(sender: Any, name: str, policy: str, **kwargs: Any) -> None:
    """``lock_contended`` receiver: count, per lock and policy, in the demo run's records."""
    timeline = Timeline.of_this_worker()
    if timeline is not None:
        timeline.contended(name, policy)
