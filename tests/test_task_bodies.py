"""task_lock finds the Celery task it is the body of, however Celery or the project wraps it
(issue 9, items 2, 4 and 6): on a real prefork worker, and for eager and direct calls."""

import time
import uuid

import pytest
from celery.result import AsyncResult

from tasklock import Lock, LockNotAcquired, task_lock
from tests import tasks
from tests.celery_app import app

RETRYING_TASKS = [
    tasks.update_game_autoretry,
    tasks.update_game_autoretry_unbound,
    tasks.update_game_wrapped,
    tasks.update_game_aliased,
]


def held(name: str) -> Lock:
    other = Lock(name, timeout=30)
    assert other.acquire()
    return other


def first_state(result: AsyncResult, timeout: float = 30) -> str:
    """The first state the worker reports for ``result`` (explicit wait, no fixed sleep)."""
    deadline = time.monotonic() + timeout
    while (state := result.state) == "PENDING":
        assert time.monotonic() < deadline, f"task {result.id} still PENDING after {timeout}s"
        time.sleep(0.02)
    return state


def game_args(task, game_id: int) -> tuple:
    return (game_id,) if task in (tasks.update_game_wrapped, tasks.update_game_aliased) else (game_id, "x")


@pytest.mark.usefixtures("celery_worker")
@pytest.mark.parametrize("task", RETRYING_TASKS, ids=lambda task: task.name.rsplit(".", 1)[-1])
def test_a_contended_wrapped_task_retries_in_the_worker_then_runs(task):
    game_id = uuid.uuid4().int % 10**9
    other = held(f"{task.name}:{game_id}")
    try:
        result = task.delay(*game_args(task, game_id))
        assert first_state(result) == "RETRY", result.traceback
    finally:
        other.release()
    assert result.get(timeout=30) == "ran"


@pytest.mark.usefixtures("celery_worker")
def test_bound_task_with_autoretry_and_whole_call_key_names_without_self():
    task = tasks.update_whole_call_autoretry
    other = held(f'{task.name}:{{"item":4}}')
    try:
        result = task.delay(4)
        assert first_state(result) == "RETRY", result.traceback
    finally:
        other.release()
    assert result.get(timeout=30) == "ran"


# Eager and direct calls: nothing can retry them later, so a held lock is LockNotAcquired.


@pytest.fixture
def game_5_held(redis_server):
    other = held(f"{tasks.update_game_forever.name}:5")
    yield
    other.release()


@pytest.mark.usefixtures("game_5_held")
def test_eager_apply_with_retry_and_no_max_retries_raises_lock_not_acquired():
    result = tasks.update_game_forever.apply((5,))
    with pytest.raises(LockNotAcquired, match=r"'tests\.tasks\.update_game_forever:5'.*eager"):
        result.get()


@pytest.mark.usefixtures("game_5_held")
@pytest.mark.parametrize("call", ["__call__", "run"])
def test_direct_call_with_retry_raises_lock_not_acquired_naming_the_lock(call):
    with pytest.raises(LockNotAcquired, match=r"'tests\.tasks\.update_game_forever:5'.*directly"):
        getattr(tasks.update_game_forever, call)(5)


@pytest.mark.usefixtures("redis_server")
@pytest.mark.parametrize("call", ["__call__", "run", "apply"])
def test_uncontended_direct_and_eager_calls_run(call):
    task = tasks.update_game_forever
    outcome = getattr(task, call)((6,)) if call == "apply" else getattr(task, call)(6)
    assert (outcome.get() if call == "apply" else outcome) == "ran"


@pytest.mark.usefixtures("redis_server")
def test_run_of_a_task_with_a_custom_name_locks_under_that_name():
    """``task.run(...)`` outside any task still names the lock after the task, not the function."""
    task = tasks.update_game_wrapped
    other = held(f"{task.name}:8")
    try:
        with pytest.raises(LockNotAcquired, match=r"'tests\.tasks\.update_game_wrapped:8'"):
            task.run(8)
    finally:
        other.release()
    assert task.run(8) == "ran"


@pytest.mark.usefixtures("redis_server")
def test_bound_run_with_whole_call_key_leaves_self_out():
    assert tasks.update_whole_call_autoretry.run(3) == "ran"


# Item 6: valid tasks are accepted at import; a plain function is refused at its first call.


def test_wrapping_with_app_task_or_an_alias_is_accepted():
    def plain(game_id):
        return "ran"

    task = app.task(name=f"tests.adhoc.{uuid.uuid4().hex}")(task_lock("game_id", on_locked="retry")(plain))
    assert task.name.startswith("tests.adhoc.")
    assert tasks.update_game_aliased.name == "tests.tasks.update_game_aliased"


@pytest.mark.usefixtures("redis_server")
def test_a_plain_function_called_inside_another_task_is_still_plain():
    """Running inside some task is not enough: the wrapper must be that task's own body."""

    @task_lock(on_locked="retry")
    def helper(item):
        return item

    @task_lock("item")
    def named(item):
        return Lock(f"{__name__}.{named.__qualname__}:{item}").locked()

    def calls_helper():
        return helper(1)

    def calls_named():
        return named(1)

    with pytest.raises(TypeError, match="plain function"):
        app.task(name=f"tests.adhoc.{uuid.uuid4().hex}")(calls_helper)()
    assert app.task(name=f"tests.adhoc.{uuid.uuid4().hex}")(calls_named)() is True
