"""Enqueue-time uniqueness on a real prefork worker and the real Redis broker (issue 11)."""

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
import redis
from celery import chain, chord, group
from celery.exceptions import MaxRetriesExceededError
from django.conf import settings

from tasklock import SKIPPED, DuplicateTask, Lock, LockNotAcquired
from tasklock.backends import get_backend
from tasklock.values.holder import Holder
from tests import unique_tasks
from tests.celery_app import app as celery_app
from tests.test_celery import intervals, overlapping_pairs
from tests.test_lifetime import wait_until

pytestmark = pytest.mark.usefixtures("celery_worker")


def broker() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


def events(run_id: str) -> list[list]:
    client = redis.Redis.from_url(settings.CELERY_RESULT_BACKEND)
    return [json.loads(item) for item in client.lrange(f"events:{run_id}", 0, -1)]


def holder_of(name: str, cache: str = "default") -> Holder | None:
    backend = get_backend(cache)
    return Holder.decode(backend.get(backend.key(name)))


@pytest.fixture
def idle_queue():
    """The queue no worker consumes, empty before and after the test."""
    broker().delete(unique_tasks.IDLE_QUEUE)
    yield unique_tasks.IDLE_QUEUE
    broker().delete(unique_tasks.IDLE_QUEUE)


def test_a_thousand_delays_of_one_key_publish_one_message(idle_queue):
    item = uuid.uuid4().hex
    results = [unique_tasks.idle_rebuild.delay(item) for _ in range(1000)]
    assert len(results) == 1000
    assert len({result.id for result in results}) == 1
    assert broker().llen(idle_queue) == 1
    holder = holder_of(f"{unique_tasks.idle_rebuild.name}:{item}")
    assert (holder.state, holder.task_id) == ("queued", results[0].id)


def test_different_keys_publish_one_message_each(idle_queue):
    items = [uuid.uuid4().hex for _ in range(10)]
    ids = {item: {unique_tasks.idle_rebuild.delay(item).id for _ in range(50)} for item in items}
    assert all(len(found) == 1 for found in ids.values())
    assert len(set().union(*ids.values())) == 10
    assert broker().llen(idle_queue) == 10


def test_on_duplicate_raise_names_the_queued_task(idle_queue):
    item = uuid.uuid4().hex
    first = unique_tasks.idle_rebuild_or_raise.delay(item)
    with pytest.raises(DuplicateTask) as raised:
        unique_tasks.idle_rebuild_or_raise.delay(item)
    assert raised.value.task_id == first.id
    assert broker().llen(idle_queue) == 1


@pytest.mark.parametrize("task", [unique_tasks.retry_once, unique_tasks.autoretry_once])
def test_until_executed_keeps_its_lock_across_a_retry_with_countdown(task):
    item, run_id = uuid.uuid4().hex, uuid.uuid4().hex
    name = f"{task.name}:{item}"
    first = task.delay(item, run_id, 2)
    wait_until(lambda: any(e[0] == "attempt 0" for e in events(run_id)), 30)
    # during the countdown: the lock is the retry's queue lock, and a duplicate is refused
    wait_until(lambda: getattr(holder_of(name), "state", None) == "queued", 5)
    assert holder_of(name).task_id == first.id
    assert task.delay(item, run_id, 2).id == first.id
    assert first.get(timeout=30) == "done"
    assert [e[0] for e in events(run_id)] == ["attempt 0", "attempt 1"]
    wait_until(lambda: holder_of(name) is None, 5)  # gone after the last attempt
    assert task.delay(item, run_id, 0).id != first.id


def test_until_executing_accepts_a_duplicate_once_the_body_started():
    item, run_id = uuid.uuid4().hex, uuid.uuid4().hex
    first = unique_tasks.rebuild_once_started.delay(item, run_id, 2)
    wait_until(lambda: events(run_id), 30)
    second = unique_tasks.rebuild_once_started.delay(item, run_id, 0)
    assert second.id != first.id
    assert first.get(timeout=30) == second.get(timeout=30) == "ran"


def test_until_executed_refuses_a_duplicate_while_it_runs():
    item, run_id = uuid.uuid4().hex, uuid.uuid4().hex
    first = unique_tasks.rebuild.delay(item, run_id, 1.5)
    wait_until(lambda: events(run_id), 30)
    holder = holder_of(f"{unique_tasks.rebuild.name}:{item}")
    assert (holder.state, holder.task_id) == ("running", first.id)
    assert unique_tasks.rebuild.delay(item, run_id, 0).id == first.id
    first.get(timeout=30)


def test_until_and_while_executing_raced_from_several_processes():
    """Four processes delay() one key for 3 s while the worker runs it: every accepted task
    runs, no two bodies overlap, and duplicates were accepted once a body had started."""
    item, run_id = uuid.uuid4().hex, uuid.uuid4().hex
    outs = [os.path.join(tempfile.mkdtemp(), f"ids-{n}.json") for n in range(4)]
    start_at = time.time() + 1.5
    racers = [
        subprocess.Popen([sys.executable, "-m", "tests.unique_racers", item, run_id, str(start_at), "3", out])
        for out in outs
    ]
    for racer in racers:
        assert racer.wait(60) == 0
    ids = set()
    for out in outs:
        with open(out) as file:
            ids.update(json.load(file))
    assert len(ids) >= 2
    for task_id in ids:
        assert unique_tasks.rebuild_both.AsyncResult(task_id).get(timeout=60) == "ran"
    spans = intervals(run_id)
    assert sorted(span[0] for span in spans) == sorted(ids)  # each accepted task ran once
    assert overlapping_pairs(spans) == 0
    name = f"{unique_tasks.rebuild_both.name}:{item}"
    assert holder_of(name) is None and holder_of(name + ":queued") is None


def test_broker_down_during_publish_reaches_the_caller_and_leaves_no_lock():
    from celery import Celery
    from kombu.exceptions import OperationalError

    from tasklock import task_lock
    from tasklock.celery import UniqueTask

    down = os.environ["TASKLOCK_TEST_DOWN"]
    dead = Celery("tasklock_dead_broker", broker=f"redis://{down}/0", set_as_current=False)
    dead.conf.broker_connection_timeout = 0.5

    @dead.task(base=UniqueTask, name="tests.dead.publish")
    @task_lock(key="item", timeout=30, unique="until_executed")
    def publish(item: str) -> str:
        return "ran"

    item = uuid.uuid4().hex
    with pytest.raises(OperationalError):
        publish.apply_async((item,), retry=False)
    assert holder_of(f"tests.dead.publish:{item}") is None
    with pytest.raises(OperationalError):  # not refused as a duplicate of the failed one
        publish.apply_async((item,), retry=False)
    assert holder_of(f"tests.dead.publish:{item}") is None


def test_revoke_of_a_queued_task_frees_its_lock():
    item, run_id = uuid.uuid4().hex, uuid.uuid4().hex
    name = f"{unique_tasks.rebuild.name}:{item}"
    result = unique_tasks.rebuild.apply_async((item, run_id), countdown=2)
    assert holder_of(name).state == "queued"
    result.revoke()
    wait_until(lambda: holder_of(name) is None, 15)
    assert events(run_id) == []
    assert unique_tasks.rebuild.delay(item, run_id).id != result.id


def scheduled_in_worker(task_id: str) -> bool:
    """Whether a worker holds task ``task_id`` in its timer, waiting for its countdown."""
    found = celery_app.control.inspect(timeout=1).scheduled() or {}
    return any(entry["request"]["id"] == task_id for entries in found.values() for entry in entries)


def test_revoke_of_a_task_waiting_for_its_countdown_in_the_worker_frees_its_lock_at_once():
    """The worker has the message and waits for its ETA (10 minutes away): a revoke frees the
    queue lock then, not at the ETA, and a duplicate is queued and runs meanwhile."""
    item, run_id = uuid.uuid4().hex, uuid.uuid4().hex
    name = f"{unique_tasks.rebuild.name}:{item}"
    result = unique_tasks.rebuild.apply_async((item, run_id), countdown=600)
    wait_until(lambda: scheduled_in_worker(result.id), 60)
    assert holder_of(name).task_id == result.id
    result.revoke()
    wait_until(lambda: holder_of(name) is None, 60)
    again = unique_tasks.rebuild.delay(item, run_id)
    assert again.id != result.id
    assert again.get(timeout=60) == f"ran {item}"
    assert [event[1] for event in events(run_id)] == [again.id]


def test_a_chain_of_unique_tasks():
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    result = chain(
        unique_tasks.rebuild.si(first), unique_tasks.rebuild.si(second), unique_tasks.rebuild.si(first)
    )()
    assert result.get(timeout=30) == f"ran {first}"
    assert result.parent.get(timeout=30) == f"ran {second}"


def test_a_duplicate_inside_a_group_returns_the_existing_result():
    """The group waits for the ids it froze: the duplicate's id reports the one run's result."""
    item, other, run_id = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    rebuild = unique_tasks.rebuild
    result = group(rebuild.si(item, run_id, 1), rebuild.si(item, run_id, 1), rebuild.si(other))()
    assert result.get(timeout=30) == [f"ran {item}", f"ran {item}", f"ran {other}"]
    assert len(events(run_id)) == 1  # the body ran once for the two copies


def test_a_chord_with_a_duplicate_in_its_header_completes():
    item, run_id = uuid.uuid4().hex, uuid.uuid4().hex
    rebuild = unique_tasks.rebuild
    result = chord([rebuild.si(item, run_id, 1), rebuild.si(item, run_id, 1)], unique_tasks.joined.s())()
    assert result.get(timeout=30) == f"ran {item}|ran {item}"
    assert len(events(run_id)) == 1


def test_a_lock_taken_outside_a_task_is_a_duplicate_without_a_task_id():
    item = uuid.uuid4().hex
    with Lock(f"{unique_tasks.rebuild.name}:{item}", timeout=10), pytest.raises(DuplicateTask) as raised:
        unique_tasks.rebuild.delay(item)
    assert raised.value.task_id is None


def refused(result, policy: str) -> None:
    """Wait for the outcome of a task that did not run its body under ``policy``."""
    if policy == "skip":
        assert result.get(timeout=60) == SKIPPED
    else:
        with pytest.raises((LockNotAcquired, MaxRetriesExceededError)):
            result.get(timeout=60)


@pytest.mark.parametrize("cache", ["default", "database"])
@pytest.mark.parametrize("policy", ["skip", "raise", "retry"])
def test_until_and_while_executing_that_does_not_run_frees_its_own_queue_lock(policy, cache, request):
    """Its run lock held by another copy: skipped, raised, or out of retries, the task frees its
    queue lock as it ends, so the next publish is queued (not answered with this task's id)."""
    if cache == "database":
        request.getfixturevalue("database_cache")
    task = unique_tasks.REFUSED[policy, cache]
    item, run_id = uuid.uuid4().hex, uuid.uuid4().hex
    name = f"{task.name}:{item}"
    with Lock(name, timeout=60, cache=cache):  # another copy's body runs
        first = task.delay(item, run_id)
        assert holder_of(name + ":queued", cache).task_id == first.id
        refused(first, policy)
        assert holder_of(name + ":queued", cache) is None, "its queue lock outlived it"
        second = task.delay(item, run_id)
        assert second.id != first.id
        refused(second, policy)
    assert events(run_id) == []


@pytest.fixture(params=["default", "memcached"])
def gated(request):
    """The gated until_executed task on django-redis, then on memcached."""
    if request.param == "memcached":
        request.getfixturevalue("memcached_server")
    return unique_tasks.GATED[request.param]


def open_gate(run_id: str) -> None:
    redis.Redis.from_url(settings.CELERY_RESULT_BACKEND).set(unique_tasks.gate_key(run_id), 1, ex=300)


@pytest.fixture
def run_id():
    """A run's id; its gate is opened at the end whatever happened, so no task waits on."""
    run_id = uuid.uuid4().hex
    yield run_id
    open_gate(run_id)


def test_a_duplicate_heading_a_chain_passes_on_the_existing_result(gated, run_id):
    """The duplicate publishes no body of its own, yet the chain's next step runs, with the
    existing task's result."""
    item = uuid.uuid4().hex
    first = gated.delay(item, run_id, True)
    chained = chain(gated.si(item, run_id), unique_tasks.then.s())()
    open_gate(run_id)
    assert chained.get(timeout=60) == f"then ran {item}"
    assert first.get(timeout=60) == f"ran {item}"
    assert [event[1] for event in events(run_id)] == [first.id], "the body ran once"


def test_a_duplicate_with_a_link_runs_the_callback_with_the_existing_result(gated, run_id):
    item = uuid.uuid4().hex
    first = gated.delay(item, run_id, True)
    callback = unique_tasks.then.s()
    callback.freeze()
    linked = gated.apply_async((item, run_id), link=callback)
    open_gate(run_id)
    assert celery_app.AsyncResult(callback.id).get(timeout=60) == f"then ran {item}"
    assert linked.id == first.id, "a plain call still gets the existing task's AsyncResult"
    assert linked.get(timeout=60) == first.get(timeout=60) == f"ran {item}"
    assert [event[1] for event in events(run_id)] == [first.id], "the body ran once"


def test_a_duplicate_ending_a_chain_gives_the_chain_its_result(gated, run_id):
    """The worker publishes the chain's last step; a duplicate there reports the existing
    task's result under the id the chain waits for."""
    item, other = uuid.uuid4().hex, uuid.uuid4().hex
    first = gated.delay(item, run_id, True)
    chained = chain(gated.si(other, run_id), gated.si(item, run_id))()
    wait_until(lambda: chained.state == "RETRY", 60)  # published as a duplicate, following the first
    open_gate(run_id)
    assert chained.get(timeout=60) == first.get(timeout=60) == f"ran {item}"
    assert sorted(event[1] for event in events(run_id)) == sorted([first.id, chained.parent.id])


def test_a_duplicate_of_a_task_that_stores_no_result_fails_its_canvas_at_once(run_id):
    """Nothing to follow: the group and the chain fail with DuplicateTask (not a stand-in polling
    for ever), and the existing task still runs once."""
    task, item = unique_tasks.GATED_UNSTORED, uuid.uuid4().hex
    task.delay(item, run_id, True)
    grouped = group(task.si(item, run_id), unique_tasks.then.s("other"))()
    chained = chain(task.si(item, run_id), unique_tasks.then.s())()
    for result in (grouped, chained):
        with pytest.raises(DuplicateTask, match="ignore_result"):
            result.get(timeout=60)
    open_gate(run_id)
    wait_until(lambda: holder_of(f"{task.name}:{item}") is None, 60)
    assert len(events(run_id)) == 1


def test_a_duplicate_of_a_call_that_stores_no_result_fails_its_canvas_once_that_ends(run_id):
    """``ignore_result=True`` on the existing call only: the stand-in sees it end (its lock gone)
    without a result and fails soon after, instead of polling for ever."""
    task, item = unique_tasks.GATED["default"], uuid.uuid4().hex
    task.apply_async((item, run_id, True), ignore_result=True)
    grouped = group(task.si(item, run_id), unique_tasks.then.s("other"))()
    wait_until(lambda: grouped.results[0].state == "RETRY", 60)  # following the running task
    open_gate(run_id)
    with pytest.raises(DuplicateTask, match="stored no result"):
        grouped.get(timeout=60)
    assert len(events(run_id)) == 1
