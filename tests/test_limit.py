"""``limit=N``: up to N holders of one name, each with its own slot (one process)."""

import time
import uuid

import pytest
from django.db import connections

from tasklock import Lock, LockError, lock
from tasklock.backends import get_backend
from tasklock.values.slots import Record


def _name() -> str:
    return f"limit:{uuid.uuid4().hex}"


@pytest.mark.parametrize("limit", [0, -1, True, "3", 2.5, None])
def test_bad_limits_are_refused_naming_the_argument(limit):
    with pytest.raises(ValueError, match="limit"):
        Lock("x", limit=limit)


def test_limit_holders_then_the_next_is_refused(lock_cache):
    name = _name()
    holders = [Lock(name, 30, lock_cache, limit=3) for _ in range(4)]
    assert [each.acquire() for each in holders] == [True, True, True, False]
    assert all(each.owned() for each in holders[:3]) and not holders[3].owned()
    tokens = {each.fencing_token for each in holders[:3]}
    assert len(tokens) == 3 or tokens == {None}
    assert holders[1].release()
    assert not holders[1].owned() and holders[0].owned() and holders[2].owned()
    assert holders[3].acquire()
    assert not holders[1].release()  # released once: nothing of its own left
    for each in (holders[0], holders[2], holders[3]):
        assert each.release()
    assert not holders[0].locked()
    assert get_backend(lock_cache).get(get_backend(lock_cache).key(name)) is None


def test_each_holder_extends_its_own_slot(lock_cache):
    name = _name()
    short, long_ = Lock(name, 0.4, lock_cache, limit=2), Lock(name, 0.4, lock_cache, limit=2)
    assert short.acquire() and long_.acquire()
    assert long_.extend(30)
    third = Lock(name, 30, lock_cache, limit=2)
    deadline = time.monotonic() + 5
    while not third.acquire():  # the short one's slot lapses; the extended one keeps its own
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert long_.owned() and not short.owned()
    assert not short.release() and not short.extend()
    assert long_.release() and third.release()


def test_a_different_limit_is_an_error_naming_both(lock_cache):
    name = _name()
    with lock(name, 30, cache=lock_cache, limit=3) as held:
        assert held
        for other, blocking in ((1, False), (2, False), (1, True), (4, True)):
            wait = {"wait": 0.2} if blocking else {}
            with pytest.raises(LockError, match=rf"limit=3.*limit={other}"):
                Lock(name, 30, lock_cache, limit=other).acquire(blocking=blocking, **wait)
    with lock(name, 30, cache=lock_cache) as plain:
        assert plain
        with pytest.raises(LockError, match=r"limit=1.*limit=2"):
            Lock(name, 30, lock_cache, limit=2).acquire()


def test_clear_frees_every_holder(lock_cache):
    from tasklock.operations.clearing import clear

    name = _name()
    holders = [Lock(name, 30, lock_cache, limit=2) for _ in range(2)]
    assert all(each.acquire() for each in holders)
    assert clear(name, cache=lock_cache)
    assert not any(each.owned() for each in holders)
    assert Lock(name, 30, lock_cache, limit=2).acquire()


def test_blocking_waiters_get_freed_slots(lock_cache):
    name = _name()
    holders = [Lock(name, 30, lock_cache, limit=2) for _ in range(2)]
    assert all(each.acquire() for each in holders)
    waiter = Lock(name, 30, lock_cache, limit=2)
    import threading

    got = []

    def wait() -> None:
        got.append(waiter.acquire(blocking=True, wait=10))
        connections.close_all()

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.2)
    assert holders[0].release()
    thread.join(10)
    assert got == [True] and waiter.owned() and holders[1].owned()
    assert waiter.release() and holders[1].release()


def test_record_round_trip():
    record = Record(3).adding('{"token":"a/é\\"x"}', 5).adding("b", 9)
    assert Record.decode(record.encode()) == record
    assert Record.decode('{"token":"x"}') is None and Record.decode('{"limit":"3","slots":[]}') is None


@pytest.mark.parametrize("limit", [0, -1, True, "3", 2.5])
def test_task_lock_refuses_a_bad_limit_at_decoration(limit):
    from tasklock import task_lock

    with pytest.raises(ValueError, match="limit"):
        task_lock("x", limit=limit)


@pytest.mark.parametrize("unique", ["until_executing", "until_executed", "until_and_while_executing"])
def test_a_limit_with_a_publish_time_unique_mode_is_refused(unique):
    from tasklock import task_lock

    with pytest.raises(ValueError, match=r"limit=2.*unique"):
        task_lock("x", limit=2, unique=unique)


def test_task_lock_on_a_function_admits_limit_calls(lock_cache):
    from tasklock import LockNotAcquired, task_lock

    name = _name()
    inside = []

    @task_lock(key=lambda depth: name, timeout=30, cache=lock_cache, limit=2, on_locked="raise")
    def nested(depth: int) -> int:
        inside.append(depth)
        return nested(depth + 1) if depth < 2 else depth

    with pytest.raises(LockNotAcquired):  # the third nested call finds both slots taken
        nested(0)
    assert inside == [0, 1]
    assert not Lock(name, cache=lock_cache, limit=2).locked()


def test_alock_takes_slots_as_lock_does(lock_cache):
    import asyncio

    from tasklock import alock

    name = _name()

    async def main() -> list[bool]:
        async with (
            alock(name, 30, cache=lock_cache, limit=2) as first,
            alock(name, 30, cache=lock_cache, limit=2) as second,
            alock(name, 30, cache=lock_cache, limit=2) as third,
        ):
            with pytest.raises(LockError, match="limit=2"):
                await Lock(name, 30, lock_cache).aacquire()
            return [bool(first), bool(second), bool(third)]

    assert asyncio.run(main()) == [True, True, False]
    assert not Lock(name, cache=lock_cache, limit=2).locked()


def test_renewed_holders_keep_their_slots_past_many_leases(lock_cache):
    name = _name()
    holders = [Lock(name, 0.6, lock_cache, renew=True, limit=2) for _ in range(2)]
    assert all(each.acquire() for each in holders)
    deadline = time.monotonic() + 2.5  # four leases
    while time.monotonic() < deadline:
        assert not Lock(name, 30, lock_cache, limit=2).acquire()
        time.sleep(0.1)
    assert all(each.owned() and not each.lost for each in holders)
    assert all(each.release() for each in holders)


def test_slots_on_a_redis_cluster(cluster_cache):
    name = _name()
    holders = [Lock(name, 30, cluster_cache, limit=2) for _ in range(3)]
    assert [each.acquire() for each in holders] == [True, True, False]
    with pytest.raises(LockError, match="limit=2"):
        Lock(name, 30, cluster_cache).acquire()
    assert holders[0].release()
    assert holders[2].acquire(blocking=True, wait=5)
    assert holders[1].release() and holders[2].release()
    assert not holders[0].locked()
