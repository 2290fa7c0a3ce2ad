"""task_lock on a real prefork worker (4 processes) with a real Redis broker."""

import itertools
import json
import uuid

import pytest
import redis
from celery.exceptions import MaxRetriesExceededError
from django.conf import settings

from tasklock import SKIPPED, Lock
from tests import tasks
from tests.waiting import wait_until

pytestmark = pytest.mark.usefixtures("celery_worker")


def intervals(run_id: str) -> list[tuple]:
    client = redis.Redis.from_url(settings.CELERY_RESULT_BACKEND)
    return [tuple(json.loads(item)) for item in client.lrange(f"intervals:{run_id}", 0, -1)]


def overlapping_pairs(spans) -> int:
    spans = sorted(spans, key=lambda span: span[1])
    return sum(1 for a, b in itertools.pairwise(spans) if b[1] < a[2])


def max_concurrency(spans) -> int:
    events = sorted([(s[1], 1) for s in spans] + [(s[2], -1) for s in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.parametrize(
    "task",
    [
        tasks.update_game,
        tasks.update_game_unbound,
        tasks.update_game_autoretry,  # Celery wraps run() for autoretry_for (issue 9, item 2)
        tasks.update_game_autoretry_unbound,
    ],
)
def test_same_key_never_overlaps_and_retry_runs_everything(task):
    run_id = uuid.uuid4().hex
    results = [task.delay(7, run_id, 0.2) for _ in range(6)]
    assert [r.get(timeout=90) for r in results] == ["ran"] * 6
    spans = intervals(run_id)
    assert len(spans) == 6
    assert overlapping_pairs(spans) == 0


def test_different_keys_run_at_the_same_time():
    run_id = uuid.uuid4().hex
    results = [tasks.update_game.delay(key, run_id, 1.0) for key in range(4)]
    assert [r.get(timeout=60) for r in results] == ["ran"] * 4
    assert max_concurrency(intervals(run_id)) >= 2


def test_skip_returns_skipped_through_the_result_backend():
    other = Lock(f"{tasks.update_game_or_skip.name}:5", timeout=30)
    assert other.acquire()
    try:
        assert tasks.update_game_or_skip.delay(5).get(timeout=30) == SKIPPED
    finally:
        other.release()
    assert tasks.update_game_or_skip.delay(5).get(timeout=30) == "ran"


def test_retry_counts_against_max_retries():
    other = Lock(f"{tasks.update_game_few_retries.name}:9", timeout=30)
    assert other.acquire()
    try:
        with pytest.raises(MaxRetriesExceededError):
            tasks.update_game_few_retries.delay(9).get(timeout=30)
    finally:
        other.release()


def test_called_directly_uses_the_task_name_and_raises_by_default(redis_server):
    from tasklock import LockNotAcquired

    other = Lock(f"{tasks.update_game_unbound.name}:11", timeout=30)
    assert other.acquire()
    try:
        with pytest.raises(LockNotAcquired):
            tasks.update_game_unbound(11, "direct", 0)
    finally:
        other.release()
    assert tasks.update_game_unbound(11, "direct", 0) == "ran"


def test_holder_metadata_names_the_task():
    from tasklock.values.holder import Holder

    result = tasks.report_holder.delay(1)
    holder = Holder.decode(result.get(timeout=30))
    assert holder.task_name == tasks.report_holder.name
    assert holder.task_id == result.id
    assert holder.name == f"{tasks.report_holder.name}:1"


def test_two_copies_of_one_task_id_never_overlap():
    """Redis-broker redelivery and reject_on_worker_lost run copies with the same task id at
    once: ownership is the holder's random token, never the task id."""
    run_id = uuid.uuid4().hex
    task_id = uuid.uuid4().hex
    first = tasks.update_game.apply_async((8, run_id, 0.5), task_id=task_id)
    tasks.update_game.apply_async((8, run_id, 0.5), task_id=task_id)
    first.get(timeout=60)  # one copy's result: the other may still be retrying
    client = redis.Redis.from_url(settings.CELERY_RESULT_BACKEND)
    wait_until(lambda: client.llen(f"intervals:{run_id}") >= 2, "both copies ran")
    spans = intervals(run_id)
    assert len(spans) == 2
    assert overlapping_pairs(spans) == 0


def test_a_child_killed_by_its_time_limit_frees_the_lock_by_its_ttl_at_the_latest():
    """On a hard time limit the pool sends SIGTERM, then SIGKILL 0.1 s later: the body's
    finally releases the lock only if it wins that race, else the lock lives until its TTL
    (which W003 keeps at least as long as the limit). Either way it is free again by then."""
    from celery.exceptions import TimeLimitExceeded

    result = tasks.overrun.delay(1)
    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=30)
    probe = Lock(f"{tasks.overrun.name}:1", timeout=5)
    assert probe.acquire(blocking=True, wait=5)
    probe.release()
