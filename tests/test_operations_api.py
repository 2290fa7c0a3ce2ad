"""``tasklock.held_locks()`` and ``tasklock.clear()``: the Python side of ``locks list/clear``."""

import logging
from datetime import datetime

import pytest

import tasklock
from tasklock import Lock, LockError
from tasklock.signals import lock_cleared


@pytest.fixture
def held(lock_cache):
    """Locks taken in ``lock_cache`` for the test, released (or found gone) at its end."""
    taken: list[Lock] = []

    def take(name: str, timeout: float = 30) -> Lock:
        lock = Lock(name, timeout=timeout, cache=lock_cache)
        assert lock.acquire()
        taken.append(lock)
        return lock

    yield take
    for lock in taken:
        lock.release()


def test_held_locks_yields_records(lock_cache, held):
    held("ops:a")
    held("ops:b", timeout=10)
    held("other")
    records = {r.name: r for r in tasklock.held_locks("ops:*", cache=lock_cache)}
    assert set(records) == {"ops:a", "ops:b"}
    record = records["ops:b"]
    assert record.state == "running" and record.holder.endswith(f":{__import__('os').getpid()}")
    assert isinstance(record.acquired_at, datetime) and record.acquired_at.tzinfo is not None
    assert 0 < record.expires_in <= 10 and record.task_name is None and record.task_id is None
    assert {r.name for r in tasklock.held_locks(cache=lock_cache)} >= {"ops:a", "ops:b", "other"}


def test_clear_returns_the_removed_record_logs_and_signals(lock_cache, held, caplog):
    lock = held("ops:stuck")
    sent = []

    def receiver(**kwargs):
        sent.append(kwargs)

    lock_cleared.connect(receiver)
    try:
        with caplog.at_level(logging.WARNING, logger="tasklock"):
            removed = tasklock.clear("ops:stuck", cache=lock_cache)
    finally:
        lock_cleared.disconnect(receiver)
    assert removed.name == "ops:stuck" and removed.holder == lock.holder.holder and removed.state == "running"
    assert [(s["name"], s["via"]) for s in sent] == [("ops:stuck", "python")]
    assert "force-cleared" in caplog.text and "via python" in caplog.text
    assert not lock.locked() and not lock.release(), "the holder lost it"
    assert tasklock.clear("ops:stuck", cache=lock_cache) is None


def test_bad_arguments_are_clear_errors(redis_server):
    with pytest.raises(ValueError, match="non-empty str"):
        tasklock.clear("")
    with pytest.raises(TypeError, match="match"):
        tasklock.held_locks(match=3)
    with pytest.raises(TypeError, match="cache alias"):
        tasklock.held_locks(cache=1)


def test_a_down_cache_is_a_lock_error():
    with pytest.raises(LockError):
        list(tasklock.held_locks(cache="django_redis_down"))
    with pytest.raises(LockError):
        tasklock.clear("x", cache="django_redis_down")
