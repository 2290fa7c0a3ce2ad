"""The queue-lock protocol on every backend, and unique= without a worker: bad input,
eager mode, the DuplicateTask error (issue 11)."""

import pickle
import uuid

import pytest

from tasklock import DuplicateTask, Lock, LockNotAcquired, task_lock
from tasklock.backends import get_backend
from tasklock.integrations.uniqueness import QueueLock, claim, free_queued, hand_over, is_queued, requeue
from tasklock.values.holder import Holder
from tests import unique_tasks
from tests.celery_app import app


def holder_of(name: str, cache: str = "default") -> Holder | None:
    backend = get_backend(cache)
    return Holder.decode(backend.get(backend.key(name)))


def queue(name: str, cache: str, task_id: str) -> QueueLock:
    queued = QueueLock(name, cache, 30, "tests.some_task", task_id)
    assert queued.take() == (True, None)
    return queued


def test_a_start_converts_only_its_own_queue_lock(lock_cache):
    name = f"unique:{uuid.uuid4().hex}"
    queue(name, lock_cache, "mine")
    other = Lock(name, timeout=10, cache=lock_cache)
    assert not claim(other, "someone-else")
    assert holder_of(name, lock_cache).state == "queued"
    run = Lock(name, timeout=10, cache=lock_cache)
    assert claim(run, "mine")
    holder = holder_of(name, lock_cache)
    assert (holder.state, holder.task_id, holder.token) == ("running", "mine", run.token)
    if get_backend(lock_cache).fences:
        assert isinstance(run.fencing_token, int)
    # a second delivery of the same message (same id) now contends like any caller
    assert not claim(Lock(name, timeout=10, cache=lock_cache), "mine")
    assert run.release()
    assert holder_of(name, lock_cache) is None


def test_a_start_takes_a_free_lock(lock_cache):
    name = f"unique:{uuid.uuid4().hex}"
    run = Lock(name, timeout=10, cache=lock_cache)
    assert claim(run, "mine")
    assert run.release()


def test_hand_over_takes_the_run_lock_then_frees_only_its_own_queue_lock(lock_cache):
    name = f"unique:{uuid.uuid4().hex}"
    queue(name + ":queued", lock_cache, "mine")
    run = Lock(name, timeout=10, cache=lock_cache)
    assert hand_over(run, name + ":queued", "mine")
    assert holder_of(name + ":queued", lock_cache) is None
    assert holder_of(name, lock_cache).token == run.token
    # the run lock is held: a later task's start does not get it, and keeps its queue lock
    queue(name + ":queued", lock_cache, "later")
    assert not hand_over(Lock(name, timeout=10, cache=lock_cache), name + ":queued", "later")
    assert holder_of(name + ":queued", lock_cache).task_id == "later"
    assert run.release()
    assert free_queued(name + ":queued", lock_cache, "later")


def test_free_queued_and_a_failed_publish_remove_only_their_own_lock(lock_cache):
    name = f"unique:{uuid.uuid4().hex}"
    queued = queue(name, lock_cache, "mine")
    assert not free_queued(name, lock_cache, "someone-else")
    assert queued.free()
    assert not queued.free()
    run = Lock(name, timeout=10, cache=lock_cache)
    assert run.acquire()
    assert not free_queued(name, lock_cache, "mine")  # a running lock is no queue lock
    assert QueueLock(name, lock_cache, 30, "t", "x").take()[1].token == run.token
    assert run.release()


def test_requeue_turns_a_run_lock_into_its_tasks_queue_lock(lock_cache):
    name = f"unique:{uuid.uuid4().hex}"
    run = Lock(name, timeout=10, cache=lock_cache, renew=True)
    assert claim(run, "mine")
    assert requeue(run, 20)
    assert is_queued(run)
    holder = holder_of(name, lock_cache)
    assert (holder.state, holder.task_id) == ("queued", "mine")
    retry = Lock(name, timeout=10, cache=lock_cache)
    assert claim(retry, "mine")
    assert not run.release()  # no longer its own
    assert retry.release()


@pytest.mark.parametrize(
    ("option", "value"), [("unique", "until_execute"), ("unique", None), ("on_duplicate", "skip")]
)
def test_misspelt_options_are_value_errors_at_decoration(option, value):
    with pytest.raises(ValueError, match=option):
        task_lock(key=(), **{option: value})


@pytest.mark.parametrize("on_duplicate", ["existing", "raise"])
def test_on_duplicate_without_a_unique_mode_is_refused_at_decoration(on_duplicate):
    with pytest.raises(ValueError, match=f"on_duplicate='{on_duplicate}' only applies"):
        task_lock(key=(), on_duplicate=on_duplicate)
    with pytest.raises(ValueError, match="on_duplicate"):
        task_lock(key=(), unique="while_executing", on_duplicate=on_duplicate)
    assert task_lock(key=(), unique="until_executed", on_duplicate=on_duplicate)


def test_unique_on_a_task_without_unique_task_is_a_type_error_at_its_first_call(redis_server):
    from celery import Celery

    own = Celery("tasklock_not_unique", set_as_current=False)  # the suite's app stays free of E004

    @own.task(name=f"tests.not_unique_{uuid.uuid4().hex}", shared=False)
    @task_lock(key=(), unique="until_executed")
    def not_unique() -> str:
        return "ran"

    with pytest.raises(TypeError, match="UniqueTask"):
        not_unique()
    with pytest.raises(TypeError, match="UniqueTask"):
        not_unique.apply().get()


def test_duplicate_task_is_a_lock_not_acquired_that_survives_pickling():
    error = DuplicateTask("already queued", "abc")
    assert isinstance(error, LockNotAcquired)
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.task_id) == ("already queued", "abc")


@pytest.fixture
def always_eager():
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def test_apply_runs_a_unique_task_and_leaves_no_lock(redis_server):
    item = uuid.uuid4().hex
    assert unique_tasks.rebuild.apply((item,)).get() == f"ran {item}"
    assert holder_of(f"{unique_tasks.rebuild.name}:{item}") is None


@pytest.mark.usefixtures("always_eager")
def test_always_eager_delay_runs_under_its_own_queue_lock(redis_server):
    item = uuid.uuid4().hex
    assert unique_tasks.rebuild.delay(item).get() == f"ran {item}"
    assert unique_tasks.rebuild.delay(item).get() == f"ran {item}"  # the lock is gone again
    assert holder_of(f"{unique_tasks.rebuild.name}:{item}") is None


@pytest.mark.usefixtures("always_eager")
def test_always_eager_retry_of_until_executed_is_not_refused_by_its_own_lock(redis_server):
    item, run_id = uuid.uuid4().hex, uuid.uuid4().hex
    assert unique_tasks.retry_once.delay(item, run_id, 0).get() == "done"
    assert holder_of(f"{unique_tasks.retry_once.name}:{item}") is None


@pytest.mark.usefixtures("always_eager")
def test_always_eager_until_and_while_executing(redis_server):
    item, run_id = uuid.uuid4().hex, uuid.uuid4().hex
    assert unique_tasks.rebuild_both.delay(item, run_id, 0).get() == "ran"
    name = f"{unique_tasks.rebuild_both.name}:{item}"
    assert holder_of(name) is None and holder_of(name + ":queued") is None


def test_locks_list_shows_a_queued_lock_and_its_task(lock_cache, settings):
    import json
    from io import StringIO

    from django.core.management import call_command

    settings.TASKLOCK = {"CACHE": lock_cache, "KEY_PREFIX": f"u{uuid.uuid4().hex[:10]}"}
    queued = queue("rebuild:3", lock_cache, "the-task-id")
    running = Lock("rebuild:4", timeout=10, cache=lock_cache)
    assert running.acquire()
    out = StringIO()
    call_command("locks", "list", "--json", stdout=out)
    listed = {entry["name"]: entry for entry in json.loads(out.getvalue())}
    assert (listed["rebuild:3"]["state"], listed["rebuild:3"]["task_id"]) == ("queued", "the-task-id")
    assert listed["rebuild:4"]["state"] == "running"
    out = StringIO()
    call_command("locks", "list", stdout=out)
    rows = {line.split()[0]: line.split() for line in out.getvalue().splitlines()[1:]}
    assert rows["rebuild:3"][1] == "queued" and "the-task-id" in rows["rebuild:3"]
    assert rows["rebuild:4"][1] == "running"
    assert queued.free() and running.release()


@pytest.mark.django_db
def test_the_admin_shows_the_state_column(redis_server, settings, admin_client):
    settings.TASKLOCK = {"CACHE": "default", "KEY_PREFIX": f"u{uuid.uuid4().hex[:10]}"}
    queued = queue("rebuild:5", "default", "waiting-task-id")
    page = admin_client.get("/admin/tasklock/heldlock/").content.decode()
    assert "column-state" in page and ">queued<" in page and "waiting-task-id" in page
    assert queued.free()
