"""task_lock on plain functions: policies, release, and failure handling (real Redis)."""

import datetime
import decimal
import enum
import logging
import math
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


def test_retry_is_refused_on_a_plain_function_at_its_first_call():
    """Not at decoration: @app.task comes after @task_lock, whatever its spelling."""
    ran = []

    @task_lock(on_locked="retry")
    def work(item):
        ran.append(item)

    with pytest.raises(TypeError, match="work is a plain function"):
        work(1)
    assert ran == []


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


class Region(str, enum.Enum):  # noqa: UP042 - the mixed-in form whose str() is "Region.EU"
    EU = "eu"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (Region.EU, "eu"),
        (1, 1.0),
        (decimal.Decimal("1.0"), decimal.Decimal("1.00")),
        (
            datetime.datetime(2026, 1, 2, 3, 0, tzinfo=datetime.UTC),
            datetime.datetime(2026, 1, 2, 4, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=1))),
        ),
    ],
    ids=["str-enum", "int-float", "decimal", "time-zones"],
)
@pytest.mark.parametrize("key", [None, "region", "lock:{region}"])
def test_equal_arguments_contend_for_one_lock(lock_cache, key, first, second):
    """Issue 9, items 1 and 5: equal arguments never run two bodies at once."""
    outer = []

    @task_lock(key, cache=lock_cache, on_locked="raise")
    def work(region):
        if not outer:
            outer.append(region)
            with pytest.raises(LockNotAcquired):
                work(second)
        return "ran"

    assert work(first) == "ran"
    assert outer == [first]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"countdown": math.nan},
        {"countdown": math.inf},
        {"on_locked": "wait", "wait": math.nan},
        {"on_locked": "wait", "wait": math.inf},
        {"countdown": True},
    ],
    ids=repr,
)
def test_non_finite_seconds_refused_at_decoration(kwargs):
    """Issue 9, item 3: nan/inf fail at decoration, not later in the worker."""
    with pytest.raises(ValueError, match="finite"):
        task_lock(**kwargs)


def test_a_key_callable_returning_empty_is_a_lock_error_naming_it():
    def name_of_game(game_id):
        return ""

    @task_lock(name_of_game)
    def work(game_id):
        pytest.fail("the body must not run")

    with pytest.raises(LockError, match=r"name_of_game.*empty"):
        work(3)


def test_raising_receivers_never_replace_what_the_body_or_the_policy_returns(caplog):
    """A ``lock_released`` or ``lock_contended`` receiver with a bug is logged; the body's
    result, the release's answer and the skip policy's SKIPPED stand (issue 17, item 2)."""

    def broken(**kwargs):
        raise RuntimeError("a receiver with a bug")

    @task_lock(key="item", on_locked="skip")
    def work(item):
        return "done"

    lock_released.connect(broken)
    lock_contended.connect(broken)
    try:
        assert work("robust") == "done"
        held = held_by_someone(f"{__name__}.{work.__qualname__}:robust")
        assert work("robust") == SKIPPED
        assert held.release() is True
    finally:
        lock_released.disconnect(broken)
        lock_contended.disconnect(broken)
    assert len([record for record in caplog.records if record.name == "django.dispatch"]) == 3
