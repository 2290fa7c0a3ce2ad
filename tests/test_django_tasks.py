"""task_lock on Django's tasks, run by two real ``django-tasks-db`` ``db_worker`` processes on
PostgreSQL (issue 21)."""

import os
import signal
import time
import uuid

import pytest
import redis
from django.conf import settings

from tasklock import SKIPPED, Lock, LockNotAcquired
from tasklock.integrations.django_tasks import RETRIED
from tasklock.values.holder import Holder
from tests import dj_tasks
from tests.db_workers import start_db_worker
from tests.test_celery import intervals, overlapping_pairs
from tests.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("db_workers")]


def finished(result, seconds: float = 60):
    """``result`` once its worker has finished it."""

    def done() -> bool:
        result.refresh()
        return result.is_finished

    wait_until(done, f"task result {result.id} finishes", seconds)
    return result


def final(result, seconds: float = 60):
    """What ``result`` returned, following its re-enqueued retries to the attempt that ran."""
    value = finished(result, seconds).return_value
    while isinstance(value, dict) and value.get("tasklock") == RETRIED:
        value = finished(result.task.get_result(value["result_id"]), seconds).return_value
    return value


def test_skip_runs_one_body_at_a_time_and_the_others_return_skipped():
    run_id = uuid.uuid4().hex
    results = [dj_tasks.skip_game.enqueue(3, run_id, 0.5) for _ in range(6)]
    values = [finished(result).return_value for result in results]
    spans = intervals(run_id)
    assert values.count("ran") == len(spans) >= 1
    assert values.count(SKIPPED) == 6 - len(spans) >= 1  # two workers, a body of 0.5 s
    assert overlapping_pairs(spans) == 0


def test_retry_runs_every_body_never_two_at_once():
    run_id = uuid.uuid4().hex
    results = [dj_tasks.retry_game.enqueue(4, run_id, 0.2) for _ in range(6)]
    assert [final(result) for result in results] == ["ran"] * 6
    spans = intervals(run_id)
    assert len(spans) == 6
    assert overlapping_pairs(spans) == 0


def test_a_retry_is_the_same_task_and_arguments_enqueued_to_run_after_the_countdown():
    other = Lock(f"{dj_tasks.default_game.module_path}:5", timeout=30)
    assert other.acquire()
    try:
        attempt = finished(dj_tasks.default_game.enqueue(5))
        retried = attempt.return_value
        assert retried["tasklock"] == RETRIED
        again = dj_tasks.default_game.get_result(retried["result_id"])
        assert (again.args, again.kwargs) == ([5], {})
        assert again.task.run_after is not None
        # countdown 0.1 s +- 25 %, from when the attempt found the lock held
        assert 0.05 <= (again.task.run_after - attempt.started_at).total_seconds() <= 5
    finally:
        other.release()
    assert final(again) == "ran"


def test_wait_waits_then_retries():
    other = Lock(f"{dj_tasks.wait_game.module_path}:6", timeout=30)
    assert other.acquire()
    try:
        retried = finished(dj_tasks.wait_game.enqueue(6)).return_value
        assert retried["tasklock"] == RETRIED
    finally:
        other.release()
    assert final(dj_tasks.wait_game.get_result(retried["result_id"])) == "ran"


def test_raise_fails_the_task_result_with_lock_not_acquired():
    other = Lock(f"{dj_tasks.raise_game.module_path}:7", timeout=30)
    assert other.acquire()
    try:
        result = finished(dj_tasks.raise_game.enqueue(7))
    finally:
        other.release()
    assert result.status == "FAILED"
    assert result.errors[0].exception_class is LockNotAcquired
    assert final(dj_tasks.raise_game.enqueue(7)) == "ran"


def test_holder_metadata_names_the_task_and_its_result_id(db_workers):
    result = dj_tasks.report_holder.enqueue(1)
    holder = Holder.decode(final(result))
    assert holder.task_name == dj_tasks.report_holder.module_path
    assert holder.task_id == str(result.id)
    assert holder.name == f"{dj_tasks.report_holder.module_path}:1"
    assert holder.pid in {worker.pid for worker in db_workers}


def test_on_a_backend_that_cannot_defer_the_default_raises_naming_it():
    other = Lock(f"{dj_tasks.immediate_game.module_path}:8", timeout=30)
    assert other.acquire()
    try:
        result = dj_tasks.immediate_game.enqueue(8)  # runs at once, here
    finally:
        other.release()
    assert result.status == "FAILED"
    assert result.errors[0].exception_class is LockNotAcquired
    assert "cannot defer" in result.errors[0].traceback
    assert dj_tasks.immediate_game.enqueue(8).return_value == "ran"


def _holding_pid(item: str) -> int | None:
    client = redis.Redis.from_url(settings.CELERY_RESULT_BACKEND)
    pid = client.lindex(f"holding:{item}", 0)
    return None if pid is None else int(pid)


def _killed_while_holding(task, item: str) -> None:
    """A db_worker on the kill queue runs ``task(item)``; SIGKILLed while it holds the lock."""
    worker = start_db_worker(dj_tasks.KILL_QUEUE)
    try:
        task.enqueue(item)
        wait_until(lambda: _holding_pid(item) == worker.pid, "the worker holds the lock")
        os.kill(worker.pid, signal.SIGKILL)
        worker.process.wait()
    finally:
        worker.stop()


def test_a_killed_db_worker_s_lock_is_free_within_its_lease():
    """A db_worker is one process: nobody sees it die, but its lock stops being renewed and
    is free within the lease (3 s here; the default is TASKLOCK["TIMEOUT"])."""
    item = uuid.uuid4().hex
    _killed_while_holding(dj_tasks.hold_briefly_leased, item)
    killed = time.monotonic()
    probe = Lock(f"held:{item}", timeout=5)
    wait_until(lambda: not probe.locked(), "the killed worker's lock is free", 10)
    freed_after = time.monotonic() - killed
    print(f"a killed db_worker's lock (3 s lease) was free {freed_after:.2f} s after the kill")
    assert freed_after <= 3 + 0.5


def test_a_new_db_worker_frees_a_dead_worker_s_lock_before_its_first_task():
    item = uuid.uuid4().hex
    _killed_while_holding(dj_tasks.hold_long_leased, item)
    assert Lock(f"held:{item}", timeout=5).locked()  # a 60 s lease: nobody else frees it
    started = time.monotonic()
    worker = start_db_worker(dj_tasks.KILL_QUEUE)
    try:
        again = dj_tasks.hold_long_leased.enqueue(item, 0)
        assert final(again) == "ran"  # not SKIPPED: the lock was freed before its body ran
        freed_after = time.monotonic() - started
    finally:
        worker.stop()
    print(f"a new db_worker started and freed the dead worker's lock within {freed_after:.2f} s")
    assert freed_after < 60
