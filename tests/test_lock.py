"""Lock semantics on every supported backend, against real servers."""

import os
import time
import uuid

import pytest
from django.db import transaction

from tasklock import Lock, LockError, LockNotAcquired, lock
from tasklock.backends import get_backend
from tasklock.conf import MAX_TIMEOUT
from tasklock.signals import lock_acquired, lock_released


def unique(prefix: str = "t") -> str:
    return f"{prefix}:{uuid.uuid4().hex}"


def test_acquire_release_cycle(lock_cache):
    held = Lock(unique(), timeout=10, cache=lock_cache)
    assert not held and not held.locked()
    assert held.acquire() is True
    assert held and held.owned() and held.locked()
    other = Lock(held.name, timeout=10, cache=lock_cache)
    assert other.acquire() is False
    assert other.locked() and not other.owned() and not other
    assert other.release() is False, "a Lock that never acquired releases nothing"
    assert held.owned()
    assert held.release() is True
    assert not held and not held.locked()
    assert held.release() is False, "a second release finds nothing of its own"
    assert other.acquire() is True
    other.release()


def test_not_reentrant(lock_cache):
    held = Lock(unique(), timeout=10, cache=lock_cache)
    assert held.acquire()
    with pytest.raises(LockError, match="not re-entrant"):
        held.acquire()
    held.release()


def test_holder_metadata(lock_cache):
    held = Lock(unique(), timeout=10, cache=lock_cache)
    held.acquire()
    holder = held.holder
    assert holder.token == held.token and holder.name == held.name
    assert holder.pid > 0 and holder.host and holder.thread
    assert holder.expires_at - holder.acquired_at == pytest.approx(10)
    assert holder.task_name is None and holder.task_id is None
    held.release()
    assert held.holder is None


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), "10", True])
def test_bad_timeouts_are_refused(timeout):
    with pytest.raises(ValueError, match="timeout"):
        Lock("x", timeout=timeout)


def test_wait_needs_blocking(redis_server):
    with pytest.raises(ValueError, match="blocking"):
        Lock(unique()).acquire(wait=1)


def test_extend_is_owner_checked(lock_cache):
    held = Lock(unique(), timeout=2, cache=lock_cache)
    assert held.extend() is False, "nothing to extend before acquiring"
    held.acquire()
    assert held.extend(30) is True
    assert held.holder.timeout == 30
    assert held.owned()
    with pytest.raises(ValueError):
        held.extend(0)
    held.release()


def test_sub_second_timeout_is_really_stored(lock_cache):
    """memcached takes whole seconds and Django's RedisCache int()s timeouts: 0.5 s must
    still store a lock that others can see."""
    held = Lock(unique(), timeout=0.5, cache=lock_cache)
    assert held.acquire()
    assert Lock(held.name, cache=lock_cache).locked()
    assert not Lock(held.name, timeout=5, cache=lock_cache).acquire()
    held.release()


def test_expiry_safety(lock_cache):
    """A's TTL runs out, B takes the lock: A can neither release nor extend B's lock."""
    ttl = 1 if lock_cache == "memcached" else 0.3
    a = Lock(unique("expiry"), timeout=ttl, cache=lock_cache)
    assert a.acquire()
    time.sleep(ttl + 0.05)
    assert not a, "the local flag drops at the local deadline"
    gone_by = time.monotonic() + 3  # memcached keeps a lock up to a second past its timeout
    while a.locked() and time.monotonic() < gone_by:
        time.sleep(0.05)
    b = Lock(a.name, timeout=30, cache=lock_cache)
    assert b.acquire()
    assert a.release() is False
    assert a.extend() is False
    assert b.owned()
    assert b.release() is True


def test_blocking_acquire_gives_up_after_wait(lock_cache):
    held = Lock(unique(), timeout=10, cache=lock_cache)
    held.acquire()
    started = time.monotonic()
    assert Lock(held.name, cache=lock_cache).acquire(blocking=True, wait=0.3) is False
    assert 0.3 <= time.monotonic() - started < 2
    held.release()


def test_blocking_acquire_gets_lock_after_expiry(lock_cache):
    ttl = 1 if lock_cache == "memcached" else 0.3
    held = Lock(unique(), timeout=ttl, cache=lock_cache)
    held.acquire()
    waiter = Lock(held.name, timeout=10, cache=lock_cache)
    assert waiter.acquire(blocking=True, wait=5)
    assert waiter.owned()
    waiter.release()


def test_with_lock_object_raises_when_held(lock_cache):
    name = unique()
    with Lock(name, timeout=10, cache=lock_cache) as first:
        assert first.owned()
        with pytest.raises(LockNotAcquired), Lock(name, cache=lock_cache):
            pytest.fail("the body must not run")
    assert not Lock(name, cache=lock_cache).locked()


def test_lock_context_manager_never_raises_for_contention(lock_cache):
    name = unique()
    with lock(name, timeout=10, cache=lock_cache) as held:
        assert held
        with lock(name, cache=lock_cache) as second:
            assert not second
    assert not Lock(name, cache=lock_cache).locked()


def test_lock_released_on_exception(lock_cache):
    name = unique()
    with pytest.raises(RuntimeError), lock(name, timeout=10, cache=lock_cache):
        raise RuntimeError
    assert not Lock(name, cache=lock_cache).locked()


def test_signals(redis_server):
    seen = []

    def on_acquired(sender, lock, waited, **kwargs):
        seen.append(("acquired", sender, lock.name, waited >= 0))

    def on_released(sender, lock, released, held_for, **kwargs):
        seen.append(("released", sender, lock.name, released, held_for >= 0))

    lock_acquired.connect(on_acquired)
    lock_released.connect(on_released)
    try:
        with lock("signals", timeout=5):
            pass
    finally:
        lock_acquired.disconnect(on_acquired)
        lock_released.disconnect(on_released)
    assert seen == [("acquired", Lock, "signals", True), ("released", Lock, "signals", True, True)]


@pytest.mark.parametrize("alias", ["redis_down", "django_redis_down", "memcached_down"])
def test_cache_down_is_an_error_not_contention(alias, memcached_server):
    """A dead server never reads as "held by someone" (pymemcache answers False, django-redis
    with IGNORE_EXCEPTIONS swallows errors): acquire raises LockError, chained."""
    held = Lock(unique(), timeout=5, cache=alias)
    for _ in range(3):  # pymemcache alternates between raising and answering False
        with pytest.raises(LockError) as caught:
            held.acquire()
        assert caught.value.__cause__ is not None or "unreachable" in str(caught.value)


@pytest.mark.django_db(transaction=True)
def test_database_lock_refused_inside_atomic(database_cache):
    held = Lock(unique(), timeout=5, cache="database")
    with transaction.atomic(), pytest.raises(LockError, match="atomic"):
        held.acquire()


def test_unsafe_cache_refused_at_runtime(settings):
    from django.core.exceptions import ImproperlyConfigured

    for alias in ("locmem", "dummy"):
        with pytest.raises(ImproperlyConfigured, match="refuses"):
            Lock("x", cache=alias)
    settings.TASKLOCK = {"ALLOW_PROCESS_LOCAL_CACHE": True}
    with lock("x", cache="locmem") as held:
        assert held
    with pytest.raises(ImproperlyConfigured, match="DummyCache"):
        Lock("x", cache="dummy")


def test_long_and_spaced_names_work_on_every_backend(lock_cache):
    """Keys over 250 bytes or with spaces break memcached and the database cache's
    varchar(255): they are hashed, and the readable name stays in the metadata."""
    for name in (unique("x" * 400), unique("with spaces\tand\ncontrol")):
        held = Lock(name, timeout=10, cache=lock_cache)
        assert held.acquire()
        assert Lock(name, cache=lock_cache).locked()
        assert held.holder.name == name
        assert held.release()


@pytest.mark.django_db(transaction=True)
def test_database_errors_surface_instead_of_a_silent_false(database_cache):
    """DatabaseCache.add turns every database error into False ("someone holds it")."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS tasklock_dropped_cache")
    with pytest.raises(LockError) as caught:
        Lock(unique(), cache="database_dropped").acquire()
    assert "tasklock_dropped_cache" in str(caught.value)


def test_half_of_a_memcached_cluster_down_never_reads_as_contention(memcached_server):
    """pymemcache's HashClient answers "not added" for a server it marked failed, without
    asking it: each lock either works on the live server or raises, never reads as held."""
    outcomes = set()
    for number in range(20):
        held = Lock(unique(f"half{number}"), timeout=5, cache="memcached_half_down")
        for _ in range(3):
            try:
                outcomes.add("acquired" if held.acquire() else "contended")
            except LockError:
                outcomes.add("error")
            if held:
                held.release()
    assert outcomes == {"acquired", "error"}


@pytest.mark.parametrize("alias", ["default", "redis"])
def test_redis_release_hands_the_lock_to_a_waiter_in_line(alias, redis_server):
    """A blocked waiter waits in line; the release script itself gives it the lock (stamped by
    the server), so the lock is never free while someone waits; the waiter owns it, with a
    local deadline on the safe side. An uncontended acquire and release write nothing beside
    the lock."""
    import threading

    import redis as redis_py

    from tasklock.values.holder import Holder
    from tests.waiting import wait_until

    client = redis_py.Redis(port=redis_server.port)
    alone = Lock(unique(), timeout=30, cache=alias)
    alone.acquire()
    alone.release()
    assert not client.keys(f"*{alone.name}*"), "no line without a waiter"

    held = Lock(unique(), timeout=30, cache=alias)
    held.acquire()
    waiter = Lock(held.name, timeout=30, cache=alias)
    got = []
    thread = threading.Thread(target=lambda: got.append(waiter.acquire(blocking=True, wait=20)))
    thread.start()
    _, line, tickets = get_backend(alias).companions(held._key)
    wait_until(lambda: client.hexists(tickets, waiter.token), "the waiter joins the line")
    before = time.time()
    held.release()
    holder = Holder.decode(client.get(held._key))
    assert holder.token == waiter.token, "handed over by the release itself"
    thread.join(20)
    assert got == [True]
    assert holder == waiter.holder and waiter.owned()
    assert before - 1 < holder.acquired_at < time.time() + 1, "stamped by the server's clock"
    assert holder.expires_at == pytest.approx(holder.acquired_at + 30, abs=1e-5)
    assert waiter._deadline - time.monotonic() <= client.pttl(held._key) / 1000 + 0.01
    assert isinstance(waiter.fencing_token, int) and waiter.fencing_token > held.fencing_token
    assert not client.exists(line) and not client.exists(tickets), "the line is empty"
    assert not client.keys(f"*{held.name}* *"), "the grant was taken"
    assert waiter.release() and not client.keys(f"*{held.name}*")


def test_memcached_sockets_send_at_once(memcached_server):
    """The index's noreply writes would make the next request wait ~40 ms for a delayed ACK
    under Nagle's algorithm: the adapter turns it off on the cache's sockets."""
    import socket

    with Lock(unique(), timeout=5, cache="memcached"):
        pass
    sock = get_backend("memcached").client.sock
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


# bad input: clear errors, at once


@pytest.mark.parametrize("timeout", [10**12, 1e9, MAX_TIMEOUT + 1])
def test_timeouts_over_the_maximum_are_refused_on_every_backend(lock_cache, timeout):
    """memcached reads an exptime past 2038 as "already expired" (A and B both acquired) and
    the database cache overflows: one maximum for every backend, named in the error."""
    limit = rf"{MAX_TIMEOUT}|{MAX_TIMEOUT // 86400} days"
    with pytest.raises(ValueError, match=limit) as caught:
        Lock(unique(), timeout=timeout, cache=lock_cache)
    assert repr(timeout) in str(caught.value)
    with pytest.raises(ValueError, match=limit), lock(unique(), timeout=timeout, cache=lock_cache):
        pytest.fail("the body must not run")
    held = Lock(unique(), timeout=10, cache=lock_cache)
    assert held.acquire()
    with pytest.raises(ValueError, match=limit):
        held.extend(timeout)
    assert held.release()


def test_the_maximum_timeout_holds_on_every_backend(lock_cache):
    a = Lock(unique(), timeout=MAX_TIMEOUT, cache=lock_cache)
    assert a.acquire()
    assert not Lock(a.name, timeout=MAX_TIMEOUT, cache=lock_cache).acquire(), "stored, and held"
    assert a.extend() and a.owned()
    assert a.release()


@pytest.mark.parametrize("alias", ["default", "memcached"])
def test_nan_wait_is_refused_and_inf_waits_like_none(alias, redis_server, memcached_server):
    held = Lock(unique(), timeout=10, cache=alias)
    with pytest.raises(ValueError, match="wait"):
        held.acquire(blocking=True, wait=float("nan"))
    assert not held, "a refused wait takes nothing"
    assert held.acquire(blocking=True, wait=float("inf")) is True
    held.release()


def test_a_name_that_is_no_valid_text_is_refused_at_construction(redis_server):
    with pytest.raises(ValueError, match=r"lock name .* lone surrogate") as caught:
        Lock("report:\ud800")
    assert type(caught.value) is ValueError, "not a raw UnicodeEncodeError"


@pytest.mark.parametrize("cache", [123, b"default", ["default"], ""])
def test_cache_must_be_an_alias(cache, redis_server):
    with pytest.raises((TypeError, ValueError), match=r"cache must be .*alias"):
        Lock("x", cache=cache)
    with pytest.raises((TypeError, ValueError), match=r"cache must be .*alias"), lock("x", cache=cache):
        pytest.fail("the body must not run")


def test_messages_show_a_shortened_name(redis_server, memcached_server):
    name = "n" * 1_000_000
    with Lock(name, timeout=10) as held:
        with pytest.raises(LockNotAcquired) as contended, Lock(name):
            pytest.fail("the body must not run")
        with pytest.raises(LockError) as again:
            held.acquire()
        for message in (str(contended.value), str(again.value), repr(held)):
            assert len(message) < 400 and "1000000 chars" in message, message[:500]
    for alias in ("redis_down", "memcached_down"):
        with pytest.raises(LockError) as down:
            Lock(name, timeout=5, cache=alias).acquire()
        assert len(str(down.value)) < 600 and "1000000 chars" in str(down.value)


@pytest.mark.parametrize("alias", ["redis_down", "django_redis_down", "memcached_down"])
def test_cache_errors_name_the_alias_the_server_and_the_reason(alias, memcached_server):
    down = os.environ["TASKLOCK_TEST_DOWN"]  # 127.0.0.1:<a port nothing listens on>
    held = Lock(unique(), timeout=5, cache=alias)
    for operation in (held.acquire, held.locked):
        with pytest.raises(LockError) as caught:
            operation()
        message = str(caught.value)
        assert repr(alias) in message and down in message, message
        assert "refused" in message.lower(), message


def test_task_lock_and_clearing_messages_are_short_and_name_the_server(redis_server):
    from tasklock import task_lock
    from tasklock.operations.clearing import force_clear
    from tasklock.operations.inventory import Inventory

    name = "n" * 1_000_000

    @task_lock(lambda: name, timeout=10, on_locked="raise")
    def body():
        pytest.fail("the body must not run")

    with Lock(name, timeout=10), pytest.raises(LockNotAcquired) as contended:
        body()
    assert len(str(contended.value)) < 400 and "1000000 chars" in str(contended.value)
    down = os.environ["TASKLOCK_TEST_DOWN"]
    with pytest.raises(LockError) as cleared:
        force_clear(name, by="test", via="python", cache="redis_down")
    with pytest.raises(LockError) as listed:
        Inventory("redis_down").entries()
    for caught in (cleared, listed):
        message = str(caught.value)
        assert "'redis_down'" in message and down in message and "refused" in message, message
        assert len(message) < 600, message[:700]
