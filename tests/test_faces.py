"""The same cases on the sync and the async face of a Lock, on every supported backend: one
definition of behaviour (the plans) behind both (issue 20)."""

import time
import uuid

import pytest

from tasklock import Lock, LockError, LockNotAcquired
from tasklock.backends import get_backend
from tasklock.core.renewer import renewer
from tasklock.signals import lock_lost
from tests.faces import FACES
from tests.waiting import wait_until


def unique(prefix: str = "face") -> str:
    return f"{prefix}:{uuid.uuid4().hex}"


@pytest.fixture
def other_face(face):
    """The face that ``face`` is not."""
    made = FACES["async" if face.name == "sync" else "sync"]()
    yield made
    made.close()


def test_acquire_release_cycle(face, lock_cache):
    held = Lock(unique(), timeout=10, cache=lock_cache)
    assert not face.locked(held) and not face.owned(held)
    assert face.acquire(held) is True
    assert held and face.owned(held) and face.locked(held)
    other = Lock(held.name, timeout=10, cache=lock_cache)
    assert face.acquire(other) is False
    assert face.locked(other) and not face.owned(other) and not other
    assert face.release(other) is False, "a Lock that never acquired releases nothing"
    assert face.release(held) is True
    assert not held and not face.locked(held)
    assert face.release(held) is False, "a second release finds nothing of its own"
    assert face.acquire(other) is True
    assert face.release(other) is True


def test_a_sync_and_an_async_holder_exclude_each_other(face, other_face, lock_cache):
    held = Lock(unique(), timeout=10, cache=lock_cache)
    assert face.acquire(held)
    other = Lock(held.name, timeout=10, cache=lock_cache)
    assert other_face.acquire(other) is False
    assert other_face.locked(other) and not other_face.owned(other)
    assert other_face.owned(held), "the other face sees the same holder"
    assert face.release(held)
    assert other_face.acquire(other)
    assert face.acquire(held) is False
    assert other_face.release(other)


def test_not_reentrant(face, lock_cache):
    held = Lock(unique(), timeout=10, cache=lock_cache)
    assert face.acquire(held)
    with pytest.raises(LockError, match="not re-entrant"):
        face.acquire(held)
    assert face.release(held)


def test_holder_metadata(face, lock_cache):
    held = Lock(unique(), timeout=10, cache=lock_cache)
    assert face.acquire(held)
    holder = held.holder
    assert holder.token == held.token and holder.name == held.name
    assert holder.expires_at - holder.acquired_at == pytest.approx(10)
    assert face.release(held) and held.holder is None


def test_extend_is_owner_checked(face, lock_cache):
    held = Lock(unique(), timeout=2, cache=lock_cache)
    assert face.extend(held) is False, "nothing to extend before acquiring"
    assert face.acquire(held)
    assert face.extend(held, 30) is True
    assert held.holder.timeout == 30 and face.owned(held)
    with pytest.raises(ValueError, match="extend timeout"):
        face.extend(held, 0)
    assert face.release(held)


def test_wait_needs_blocking(face, redis_server):
    with pytest.raises(ValueError, match="blocking"):
        face.acquire(Lock(unique()), wait=1)


def test_blocking_acquire_gives_up_after_wait(face, lock_cache):
    held = Lock(unique(), timeout=10, cache=lock_cache)
    assert face.acquire(held)
    started = time.monotonic()
    assert face.acquire(Lock(held.name, cache=lock_cache), blocking=True, wait=0.3) is False
    assert 0.3 <= time.monotonic() - started < 2
    assert face.release(held)


def test_blocking_acquire_gets_the_lock_after_expiry(face, lock_cache):
    ttl = 1 if lock_cache == "memcached" else 0.3
    held = Lock(unique(), timeout=ttl, cache=lock_cache)
    assert face.acquire(held)
    waiter = Lock(held.name, timeout=10, cache=lock_cache)
    assert face.acquire(waiter, blocking=True, wait=5)
    assert face.owned(waiter) and face.release(waiter)


def test_the_context_manager_yields_a_falsy_lock_when_held_and_releases_at_exit(face, lock_cache):
    name = unique()
    seen = []
    inner = face.block(name, lambda held: seen.append(bool(held)), cache=lock_cache)
    assert seen == [True] and not inner and not face.locked(inner)
    blocker = Lock(name, timeout=10, cache=lock_cache)
    assert face.acquire(blocker)
    face.block(name, lambda held: seen.append(bool(held)), cache=lock_cache)
    assert seen == [True, False] and face.owned(blocker), "a falsy block releases nothing"
    assert face.release(blocker)


def test_the_context_manager_releases_on_an_exception(face, lock_cache):
    name = unique()

    def body(held):
        raise KeyError("boom")

    with pytest.raises(KeyError):
        face.block(name, body, cache=lock_cache)
    assert face.acquire(Lock(name, cache=lock_cache))


def test_a_lock_object_as_context_manager_raises_when_held(face, lock_cache):
    held = Lock(unique(), timeout=10, cache=lock_cache)
    assert face.acquire(held)
    with pytest.raises(LockNotAcquired):
        face.enter(Lock(held.name, cache=lock_cache), lambda inner: None)
    assert face.release(held)
    entered = Lock(held.name, cache=lock_cache)
    face.enter(entered, lambda inner: None)
    assert not entered and not face.locked(entered)


def test_a_renewing_lock_outlives_its_lease_and_is_lost_once_cleared(face, lock_cache):
    lost = []
    lock_lost.connect(receiver := lambda sender, lock, error, **kwargs: lost.append(lock))
    try:
        held = Lock(unique(), timeout=0.6, cache=lock_cache, renew=True)
        assert face.acquire(held)
        deadline = time.monotonic() + 1.5
        wait_until(lambda: time.monotonic() > deadline, "two and a half leases pass")
        assert face.owned(held) and face.extend(held) and not held.lost
        assert get_backend(lock_cache).clear(held._key) is not None
        wait_until(lambda: lost, "the renewer finds the lock gone and says so")
        assert lost == [held] and held.lost and not held
        assert face.release(held) is False and not renewer().watching(held)
    finally:
        lock_lost.disconnect(receiver)


@pytest.mark.parametrize("alias", ["redis_down", "django_redis_down", "memcached_down"])
def test_a_cache_that_is_down_is_an_error_from_every_call_within_its_socket_timeout(face, alias):
    """The down caches have 0.5 s socket timeouts; nothing listens at their address."""
    held = Lock(unique(), cache=alias)
    calls = [
        lambda: face.acquire(held),
        lambda: face.acquire(held, blocking=True, wait=5),
        lambda: face.locked(held),
        lambda: face.block(held.name, lambda inner: None, cache=alias),
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(LockError, match=alias):
            call()
        assert time.monotonic() - started < 0.5
