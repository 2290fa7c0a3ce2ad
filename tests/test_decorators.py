"""task_lock on plain functions: policies, release, and failure handling (real Redis)."""

import logging
import threading
import time
import uuid

import pytest

from tasklock import SKIPPED, Lock, LockError, LockNotAcquired, task_lock
from tasklock.signals import lock_contended, lock_released

pytestmark = pytest.mark.usefixtures("redis_server")


def held_by_someone(name: str) -> Lock:
    other = Lock(name, timeout=30)
    assert other.acquire()
    return other


def test_body_runs_under_the_lock():
    @task_lock(key="item")
    def work(item):
        return Lock(f"{__name__}.{work.__qualname__}:{item}").locked()

    assert work("a") is True
    assert not Lock(f"{__name__}.{work.__qualname__}:a").locked()


@pytest.mark.parametrize("policy", [None, "raise"])
def test_raise_is_the_default_for_plain_functions(policy):
    ran = []

    @task_lock("raise-{item}", on_locked=policy)
    def work(item):
        ran.append(item)

    other = held_by_someone("raise-1")
    with pytest.raises(LockNotAcquired):
        work(1)
    assert ran == []
    other.release()
    work(1)
    assert ran == [1]


def test_skip_returns_skipped_and_sends_contended():
    seen = []

    def receiver(sender, name, policy, task_id, **kwargs):
        seen.append((name, policy, task_id))

    @task_lock("skip-{item}", on_locked="skip")
    def work(item):
        pytest.fail("the body must not run")

    other = held_by_someone("skip-1")
    lock_contended.connect(receiver)
    try:
        assert work(1) == SKIPPED == "tasklock:skipped"
    finally:
        lock_contended.disconnect(receiver)
        other.release()
    assert seen == [("skip-1", "skip", None)]


def test_wait_policy_waits_then_raises_for_plain_functions():
    @task_lock("wait-{item}", on_locked="wait", wait=0.3)
    def work(item):
        return "ran"

    other = held_by_someone("wait-1")
    started = time.monotonic()
    with pytest.raises(LockNotAcquired):
        work(1)
    assert time.monotonic() - started >= 0.3
    threading.Timer(0.05, other.release).start()
    assert work(1) == "ran"


def test_retry_is_refused_on_a_plain_function():
    with pytest.raises(TypeError, match="plain function"):

        @task_lock(on_locked="retry")
        def work(item):
            pass


@pytest.mark.parametrize(
    "kwargs",
    [
        {"on_locked": "sometimes"},
        {"timeout": 0},
        {"countdown": -1},
        {"wait": 1},
        {"on_locked": "wait", "wait": -1},
    ],
)
def test_bad_arguments_refused_at_decoration(kwargs):
    with pytest.raises(ValueError):
        task_lock(**kwargs)


def test_released_when_the_body_raises():
    name = f"boom-{uuid.uuid4().hex}"

    @task_lock(name)
    def work():
        raise KeyError("boom")

    with pytest.raises(KeyError):
        work()
    assert not Lock(name).locked()


def test_lost_lock_is_logged_and_signalled_but_the_result_stands(caplog):
    name = f"lost-{uuid.uuid4().hex}"
    released_flags = []

    def receiver(sender, lock, released, held_for, **kwargs):
        released_flags.append(released)

    @task_lock(name, timeout=0.2, renew=False)
    def work():
        time.sleep(0.4)  # outlives its lock
        return "result"

    lock_released.connect(receiver)
    try:
        with caplog.at_level(logging.WARNING, logger="tasklock"):
            assert work() == "result"
    finally:
        lock_released.disconnect(receiver)
    assert released_flags == [False]
    assert "expired or been cleared" in caplog.text


@pytest.mark.parametrize("alias", ["redis_down", "django_redis_down", "memcached_down"])
def test_a_down_cache_never_runs_the_body(alias):
    ran = []

    @task_lock("down:lock", cache=alias, on_locked="skip")
    def work():
        ran.append(1)

    with pytest.raises(LockError):
        work()
    assert ran == []


def test_signature_is_kept_for_celery_argument_checks():
    import inspect

    @task_lock("sig:lock")
    def work(a, b=2):
        pass

    assert str(inspect.signature(work)) == "(a, b=2)"
    assert work.tasklock.key == "sig:lock"
