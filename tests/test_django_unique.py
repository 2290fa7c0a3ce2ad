"""``unique=`` for Django's tasks (issue 21): ``tasklock.django_tasks.unique_task``'s enqueue
refuses duplicates, on two real ``db_worker`` processes."""

import uuid

import pytest
import redis
from django.conf import settings
from django_tasks_db.models import DBTaskResult

from tasklock import DuplicateTask
from tasklock.integrations.django_tasks import FRAMEWORKS
from tests import dj_tasks
from tests.test_celery import intervals, overlapping_pairs
from tests.test_django_tasks import final, finished
from tests.waiting import wait_until

task_enqueued = FRAMEWORKS[0].signals.task_enqueued

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("db_workers")]


def enqueued(task, run_id: str) -> int:
    """How many results of ``task`` for ``run_id`` the backend holds."""
    return sum(
        1
        for row in DBTaskResult.objects.filter(task_path=task.module_path)
        if run_id in row.args_kwargs["args"]
    )


def running(run_id: str) -> bool:
    return redis.Redis.from_url(settings.CELERY_RESULT_BACKEND).llen(f"holding:{run_id}") > 0


def test_until_executed_duplicates_are_not_enqueued_while_queued_or_running():
    run_id = uuid.uuid4().hex
    first = dj_tasks.rebuild.enqueue(3, run_id, 1.0)
    duplicates = [dj_tasks.rebuild.enqueue(3, run_id, 1.0) for _ in range(5)]
    assert {result.id for result in duplicates} == {first.id}
    wait_until(lambda: running(run_id), "the first copy runs")
    assert dj_tasks.rebuild.enqueue(3, run_id, 1.0).id == first.id  # its body runs: still locked
    assert final(first) == "ran"
    assert enqueued(dj_tasks.rebuild, run_id) == 1
    again = dj_tasks.rebuild.enqueue(3, run_id, 0)  # ended: a new copy may be queued
    assert again.id != first.id
    assert final(again) == "ran"
    assert len(intervals(run_id)) == 2


def test_many_unique_enqueues_run_one_at_a_time_without_waiting_on_their_own_queue_locks():
    """Each copy is enqueued once the previous one ran: a worker may start a copy before its
    enqueue has named the queue lock after the result; the start waits for that and runs."""
    run_id = uuid.uuid4().hex
    for _ in range(6):
        assert final(dj_tasks.rebuild.enqueue(4, run_id, 0), 30) == "ran"
    spans = intervals(run_id)
    assert len(spans) == 6
    assert overlapping_pairs(spans) == 0


def test_until_executing_frees_the_queue_lock_as_the_body_starts():
    run_id = uuid.uuid4().hex
    first = dj_tasks.refresh_queued_once.enqueue(8, run_id, 1.0)
    assert dj_tasks.refresh_queued_once.enqueue(8, run_id, 1.0).id == first.id  # queued: refused
    wait_until(lambda: running(run_id), "the first copy runs")
    second = dj_tasks.refresh_queued_once.enqueue(8, run_id, 0)  # its body runs: a new one queues
    assert second.id != first.id
    assert (final(first), final(second)) == ("ran", "ran")
    assert enqueued(dj_tasks.refresh_queued_once, run_id) == 2


def _gets() -> int:
    """How many GETs the harness's Redis has answered (the lock cache's)."""
    client = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    return int(client.info("commandstats").get("cmdstat_get", {}).get("calls", 0))


def test_a_worker_that_starts_a_task_before_its_enqueue_returned_waits_for_the_queue_lock():
    """The backend makes the result id inside enqueue: the queue lock names it only after
    enqueue returns. Here enqueue returns only once a worker has started the task and is
    reading the queue lock again and again (waiting for it to name its result)."""
    run_id = uuid.uuid4().hex

    def started_before_returning(sender, task_result, **kwargs):
        if run_id in task_result.args:
            row = DBTaskResult.objects.filter(id=task_result.id)
            wait_until(lambda: row.get().status == "RUNNING", "a worker starts the task", 30)
            before = _gets()
            wait_until(lambda: _gets() >= before + 3, "the worker waits for its queue lock", 4)

    task_enqueued.connect(started_before_returning)
    try:
        first = dj_tasks.rebuild.enqueue(7, run_id, 0)
    finally:
        task_enqueued.disconnect(started_before_returning)
    assert finished(first, 30).return_value == "ran"  # not retried: it waited for its own lock
    assert len(intervals(run_id)) == 1


def test_on_duplicate_raise_names_the_queued_task_result():
    run_id = uuid.uuid4().hex
    first = dj_tasks.rebuild_or_raise.enqueue(5, run_id, 0.5)
    with pytest.raises(DuplicateTask) as raised:
        dj_tasks.rebuild_or_raise.enqueue(5, run_id, 0.5)
    assert raised.value.task_id == str(first.id)
    assert final(first) == "ran"
    assert enqueued(dj_tasks.rebuild_or_raise, run_id) == 1


def test_unique_on_a_task_that_cannot_veto_its_enqueue_fails_naming_the_fix():
    result = finished(dj_tasks.unique_without_unique_task.enqueue(6))
    assert result.status == "FAILED"
    assert result.errors[0].exception_class is TypeError
    assert "unique_task" in result.errors[0].traceback
