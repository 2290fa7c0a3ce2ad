"""Renewing locks: kept alive while held, never renewed after release, lost when taken."""

import threading
import time
import uuid

import pytest

from tasklock import Lock, lock
from tasklock.core.renewer import renewer
from tasklock.signals import lock_lost
from tests.test_contention import CONTENDERS, contend, overlaps


def unique(prefix: str = "renew") -> str:
    return f"{prefix}:{uuid.uuid4().hex}"


def wait_until(condition, within: float = 10.0, step: float = 0.01):
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(step)


@pytest.fixture
def lost_events():
    events = []

    def receiver(sender, lock, error, **kwargs):
        events.append((lock, error))

    lock_lost.connect(receiver)
    yield events
    lock_lost.disconnect(receiver)


def test_a_renewing_lock_outlives_its_lease(lock_cache):
    held = Lock(unique(), timeout=1, cache=lock_cache, renew=True)
    assert held.acquire()
    try:
        started = time.monotonic()
        while time.monotonic() - started < 3.5:  # 3.5 leases
            assert held.owned() and held
            time.sleep(0.1)
        assert not held.lost
        assert not Lock(held.name, cache=lock_cache).acquire()
    finally:
        assert held.release() is True


def test_without_renew_the_lease_runs_out(lock_cache):
    held = Lock(unique(), timeout=1, cache=lock_cache)
    assert held.acquire()
    wait_until(lambda: not held.locked(), within=5)
    assert held.release() is False


def test_no_renewal_after_release(redis_server):
    """After release() returns, nothing renews the key: a new holder's value is never touched."""
    name = unique()
    for _ in range(20):
        held = Lock(name, timeout=0.6, renew=True)
        assert held.acquire()
        time.sleep(0.2)  # renewals due every 0.2 s: race them
        assert held.release() is True
        assert not renewer().watching(held)
        assert not Lock(name).locked(), "a renewal after release brought the key back"


def test_force_cleared_while_renewing_is_lost_once(lock_cache, lost_events):
    held = Lock(unique(), timeout=0.6, cache=lock_cache, renew=True)
    assert held.acquire()
    from tasklock.backends import get_backend

    backend = get_backend(lock_cache)
    assert backend.clear(held._key) is not None
    wait_until(lambda: held.lost)
    time.sleep(0.5)  # more renewals would have been due: none may report again
    assert [event[0] for event in lost_events] == [held]
    assert lost_events[0][1] is None
    assert not held and held.release() is False
    assert not renewer().watching(held)


def test_taken_over_after_a_lapse_is_lost_and_the_new_holder_kept(redis_server, lost_events):
    held = Lock(unique(), timeout=0.6, renew=True)
    assert held.acquire()
    from tasklock.backends import get_backend

    backend = get_backend()
    backend.clear(held._key)
    thief = Lock(held.name, timeout=30)
    assert thief.acquire()
    wait_until(lambda: held.lost)
    assert thief.owned(), "the lost holder's renewal never touches the new holder's lock"
    assert held.release() is False and thief.owned()
    thief.release()


def test_an_unreachable_cache_is_lost_when_the_lease_runs_out(redis_server, lost_events, settings):
    """The renewer keeps trying through an outage and reports the lock lost at the lease's end."""
    from tasklock.backends import get_backend

    held = Lock(unique(), timeout=0.6, renew=True)
    assert held.acquire()
    client = get_backend().client
    client.client_pause(2000)  # every command blocks for 2 s: renewals time out or stall
    try:
        wait_until(lambda: held.lost, within=10)
    finally:
        client.connection_pool.disconnect()
        client.execute_command("CLIENT UNPAUSE")  # the next test's locks are not paused
    assert len(lost_events) == 1
    error = lost_events[0][1]
    assert error is None or "renewal" in str(error) or "extend" in str(error) or error


def test_fifty_renewing_locks_one_thread(redis_server):
    before = {t.ident for t in threading.enumerate()}
    locks = [Lock(unique(), timeout=1, renew=True) for _ in range(50)]
    for held in locks:
        assert held.acquire()
    try:
        time.sleep(2.5)  # 2.5 leases: each lock renewed several times
        assert all(held.owned() and not held.lost for held in locks)
        new_threads = [t for t in threading.enumerate() if t.ident not in before]
        assert [t.name for t in new_threads if t.name == "tasklock-renewer"] in ([], ["tasklock-renewer"])
        assert sum(1 for t in threading.enumerate() if t.name == "tasklock-renewer") == 1
        workers = sum(1 for t in threading.enumerate() if t.name == "tasklock-renewal")
        assert 1 <= workers < 5, "renewal calls run on a worker or a few, never a thread per lock"
        assert len(renewer()) >= 50
    finally:
        for held in locks:
            assert held.release() is True
    assert not any(renewer().watching(held) for held in locks)


def test_renewing_context_manager(lock_cache):
    with lock(unique(), timeout=1, cache=lock_cache, renew=True) as held:
        assert held
        time.sleep(2.5)  # 2.5 leases
        assert held.owned() and not held.lost
    assert not held.locked()


@pytest.mark.parametrize("bad", [0.1, 0.29])
def test_renew_needs_a_lease_of_at_least_0_3_s(bad, redis_server):
    with pytest.raises(ValueError, match=r"at least 0\.3"):
        Lock(unique(), timeout=bad, renew=True)


@pytest.mark.parametrize("bad", [1, "yes", None])
def test_renew_must_be_a_bool(bad, redis_server):
    with pytest.raises(ValueError, match="renew must be True or False"):
        Lock(unique(), timeout=1, renew=bad)


@pytest.mark.parametrize("cache", ["default", "memcached"])
def test_renewed_locks_exclude_across_processes_for_five_leases(cache, tmp_path, request):
    """Each holder keeps the lock for 5 leases while others contend: still one at a time."""
    lease, hold = 0.6, 3.0  # five leases; each contender holds once, so the lock changes hands
    request.getfixturevalue("redis_server" if cache == "default" else "memcached_server")
    per_process = contend(tmp_path, cache, seconds=2 * hold + 1.5, hold=hold, lease=lease, once=True)
    acquisitions = sum(map(len, per_process))
    assert acquisitions >= 2 and sum(1 for spans in per_process if spans) >= 2
    assert overlaps(per_process) == 0
    assert len(per_process) == CONTENDERS


def test_task_lock_renews_by_default_and_checks_the_lease_at_decoration(redis_server):
    from tasklock import held_lock, task_lock

    @task_lock((), timeout=1)
    def work():
        held = held_lock()
        time.sleep(2.5)  # 2.5 leases
        return held.renew, held.owned(), held.lost

    assert held_lock() is None
    assert work() == (True, True, False)
    assert held_lock() is None
    with pytest.raises(ValueError, match=r"at least 0\.3 s, or renew=False"):
        task_lock((), timeout=0.2)
    with pytest.raises(ValueError, match="renew must be True or False"):
        task_lock((), renew="no")


def test_a_shorter_lease_taken_while_a_longer_one_is_held_is_renewed_in_time(redis_server):
    """The renewer sleeps until the longer lease's renewal; a lock due sooner must wake it."""
    with Lock(unique(), timeout=30, renew=True) as long_held:
        time.sleep(0.1)  # the renewer now sleeps until long_held's renewal, 10 s away
        with Lock(unique(), timeout=0.6, renew=True) as short_held:
            time.sleep(1.5)  # 2.5 short leases
            assert short_held.owned() and not short_held.lost
        assert long_held.owned()


def test_released_locks_leave_no_renewals_queued(redis_server):
    """Acquires that need no earlier wake-up do not wake the renewer, so release() itself must
    drop the forgotten entries, or they pile up until the first one falls due."""
    for _ in range(200):
        with Lock(unique(), timeout=30, renew=True):
            pass
    assert len(renewer()._due) < 50
