"""Django's tasks outside a worker (issue 21): the system checks, a backend that cannot defer,
a direct call, ``unique_task``'s arguments."""

import pytest

from tasklock import Lock, LockNotAcquired
from tasklock.checks.django_tasks import check_django_tasks, module_problems
from tasklock.django_tasks import unique_task
from tests import dj_tasks

pytestmark = pytest.mark.usefixtures("redis_server")


def test_e004_and_e005_name_each_task_that_would_misbehave():
    found = {message.obj: message for message in module_problems(dj_tasks)}
    assert {path: message.id for path, message in found.items()} == {
        dj_tasks.unique_without_unique_task.module_path: "tasklock.E004",
        dj_tasks.immediate_retry.module_path: "tasklock.E005",
    }
    assert "unique_task" in found[dj_tasks.unique_without_unique_task.module_path].hint
    assert "'immediate'" in found[dj_tasks.immediate_retry.module_path].msg


def test_the_check_reads_the_installed_apps_tasks_modules():
    """tests.tasks holds Celery tasks only: nothing to report, and no crash."""
    assert check_django_tasks() == []


def test_retry_on_a_backend_that_cannot_defer_fails_the_task_never_drops_it():
    other = Lock(f"{dj_tasks.immediate_retry.module_path}:1", timeout=30)
    assert other.acquire()
    try:
        result = dj_tasks.immediate_retry.enqueue(1)  # the immediate backend runs it here
    finally:
        other.release()
    assert result.status == "FAILED"
    assert result.errors[0].exception_class is LockNotAcquired
    assert "supports_defer is False" in result.errors[0].traceback


def test_a_direct_call_of_a_retrying_task_runs_and_raises_when_locked():
    """``Task.call()`` runs the function here, with no worker to retry it: not a TypeError."""
    assert dj_tasks.retry_game.call(2, "direct", 0) == "ran"
    other = Lock(f"{dj_tasks.retry_game.module_path}:2", timeout=30)
    assert other.acquire()
    try:
        with pytest.raises(LockNotAcquired, match="called directly"):
            dj_tasks.retry_game.call(2, "direct", 0)
    finally:
        other.release()


def test_unique_task_takes_the_options_of_django_s_task():
    with pytest.raises(TypeError, match="run_after"):
        unique_task(run_after=None)
    made = unique_task(priority=3, queue_name="default")(dj_tasks.ping.func)
    assert (made.priority, made.queue_name, made.takes_queue_locks) == (3, "default", True)
