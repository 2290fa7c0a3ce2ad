"""One renewing lock's trouble never costs another its renewal (issue 17, item 2): a
``lock_lost`` receiver that raises or is slow, a cache connection that stops answering.
A frozen lock is lost before its lease ends, and its ``release()`` does not hang."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from django.db import connection

from tasklock import Lock, LockError
from tasklock.backends import get_backend
from tasklock.signals import lock_lost
from tests.proxy import FreezableProxy
from tests.waiting import wait_until

#: the leases of these tests (s); a renewal is due every third of it
LEASE = 1.5


def unique(prefix: str = "isolated") -> str:
    return f"{prefix}:{uuid.uuid4().hex}"


def keep_for(held: Lock, seconds: float) -> None:
    """Check, for ``seconds``, that ``held`` stays this holder's and is never lost."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        assert held.owned() and not held.lost, "the lock was not renewed"
        time.sleep(0.05)


@pytest.fixture
def lost_events() -> Iterator[list]:
    events: list = []

    def record(sender, lock, error, **kwargs):
        events.append((lock, error))

    lock_lost.connect(record)
    yield events
    lock_lost.disconnect(record)


def _raises(sender, lock, error, **kwargs):
    raise RuntimeError("a lock_lost receiver with a bug")


def _slow(sender, lock, error, **kwargs):
    time.sleep(3)  # two leases


@pytest.mark.parametrize("receiver", [_raises, _slow], ids=["raising", "slow"])
def test_a_lock_lost_receiver_never_costs_another_lock_its_renewal(receiver, lock_cache):
    lock_lost.connect(receiver)
    kept = Lock(unique(), timeout=LEASE, cache=lock_cache, renew=True)
    doomed = Lock(unique(), timeout=LEASE, cache=lock_cache, renew=True)
    try:
        assert kept.acquire() and doomed.acquire()
        get_backend(lock_cache).clear(doomed._key)
        wait_until(lambda: doomed.lost, "the cleared lock is found lost")
        keep_for(kept, 3 * LEASE)  # three leases: while the receiver runs, and after
        assert kept.release() is True
    finally:
        lock_lost.disconnect(receiver)
        kept.release_quietly()


def _location(alias: str, settings) -> tuple[str, str]:
    """The server address in ``alias``'s LOCATION, and the LOCATION."""
    location = settings.CACHES[alias]["LOCATION"]
    address = os.environ["TASKLOCK_TEST_MEMCACHED" if alias == "memcached" else "TASKLOCK_TEST_REDIS"]
    assert address in location
    return address, location


#: a frozen alias: its name, ``freeze(lock)`` and ``thaw()``
Frozen = tuple[str, Callable[[Lock], None], Callable[[], None]]


@contextlib.contextmanager
def frozen_alias(lock_cache: str, settings) -> Iterator[Frozen]:
    """A cache alias whose connections can be frozen, ``freeze(lock)`` and ``thaw()``.

    Redis and memcached: an alias through a ``FreezableProxy`` (every call through it hangs
    once frozen). The database: the same alias; a freeze holds the lock's row in another
    transaction (``FOR UPDATE``), so its renewal blocks while other rows stay free."""
    if lock_cache == "database":
        holders: list[psycopg.Connection] = []

        def freeze_row(held: Lock) -> None:
            blocker = psycopg.connect(
                host="127.0.0.1", port=5432, user="postgres", dbname=connection.settings_dict["NAME"]
            )
            holders.append(blocker)
            blocker.execute("SELECT 1 FROM tasklock_cache WHERE cache_key = %s FOR UPDATE", [held._key])

        def thaw_rows() -> None:
            while holders:
                holders.pop().close()

        try:
            yield lock_cache, freeze_row, thaw_rows
        finally:
            thaw_rows()
        return
    address, location = _location(lock_cache, settings)
    proxy = FreezableProxy(address)
    proxied = {**settings.CACHES[lock_cache], "LOCATION": location.replace(address, proxy.address)}
    settings.CACHES = {**settings.CACHES, "frozen": proxied}
    try:
        yield "frozen", lambda held: proxy.freeze(), proxy.thaw
    finally:
        proxy.close()


class LateLost(threading.Thread):
    """Watches locks: fails if one is past its lease (its local deadline) and not yet lost."""

    def __init__(self, *locks: Lock) -> None:
        super().__init__(daemon=True)
        self.locks, self.late, self.stopped = locks, [], threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.002):
            for held in self.locks:
                now = time.monotonic()
                lost, deadline = held.lost, held._deadline
                if not lost and deadline and now > deadline:
                    self.late.append((held.name, now - deadline))


def test_a_frozen_connection_costs_only_its_own_locks(lock_cache, settings, lost_events):
    """Two locks on a frozen connection, one on a direct one: the frozen ones are lost before
    their lease ends (one while its holder's release() waits for its hung renewal, which
    returns then), the direct one keeps being renewed."""
    with frozen_alias(lock_cache, settings) as (alias, freeze, _):
        released = Lock(unique(), timeout=LEASE, cache=alias, renew=True)
        abandoned = Lock(unique(), timeout=LEASE, cache=alias, renew=True)
        direct = Lock(unique(), timeout=LEASE, cache=lock_cache, renew=True)
        assert released.acquire() and abandoned.acquire() and direct.acquire()
        watchdog = LateLost(released, abandoned)
        watchdog.start()
        try:
            renewed = released._value
            wait_until(lambda: released._value != renewed, "a renewal before the freeze", 5)
            freeze(released)  # its next renewal, a third of the lease away, will hang
            freeze(abandoned)
            frozen_at = time.monotonic()
            wait_until(released._extending.locked, "a renewal hangs", 5)
            outcome: list[bool] = []
            releaser = threading.Thread(target=lambda: outcome.append(released.release()), daemon=True)
            releaser.start()
            wait_until(lambda: outcome, "release() returns while its renewal hangs", 3 * LEASE)
            wait_until(lambda: abandoned.lost, "the other frozen lock is lost", 3 * LEASE)
            assert outcome == [False] and released.lost and not released
            assert not abandoned and abandoned.release() is False
            if lock_cache != "database":  # its key expired: another holder takes it
                thief = Lock(abandoned.name, timeout=30, cache=lock_cache)
                wait_until(lambda: thief.acquire(), "the frozen lock's key expires")
                thief.release()
            keep_for(direct, max(0.0, frozen_at + 3 * LEASE - time.monotonic()))
            assert direct.release() is True
        finally:
            watchdog.stopped.set()
            watchdog.join()
            direct.release_quietly()
    assert watchdog.late == [], "a frozen lock was past its lease before it was lost"
    frozen = {id(held): error for held, error in lost_events}
    assert set(frozen) == {id(released), id(abandoned)}
    assert all(isinstance(error, LockError) for error in frozen.values())


def test_a_raising_lock_lost_receiver_in_a_worker_never_lets_two_bodies_run(celery_worker):
    """A real prefork worker: a body holds its renewing lock (2 s lease) for 8 s and loses a
    second lock, whose lock_lost receiver raises; another task on the same key waits. The first
    body's lock is renewed throughout: the two bodies never overlap."""
    from tasklock import clear
    from tests import tasks
    from tests.test_celery import intervals, overlapping_pairs

    item, run_id, doomed = uuid.uuid4().hex, uuid.uuid4().hex, unique("doomed")
    first = tasks.renewed_body.delay(item, run_id, 8, doomed)
    wait_until(Lock(doomed).locked, "the first body holds its second lock", 30)
    assert clear(doomed) is not None  # its renewal finds it gone: lock_lost, to the raising receiver
    second = tasks.renewed_body.delay(item, run_id, 0.1)
    assert first.get(timeout=60) is False, "the first body's own lock was lost"
    assert second.get(timeout=60) is False
    spans = intervals(run_id)
    assert len(spans) == 2
    assert overlapping_pairs(spans) == 0, "two bodies ran at once"


@pytest.mark.parametrize("lock_cache", ["default", "memcached"], indirect=True)
def test_a_renewal_that_answers_after_the_lock_was_given_up_is_undone(lock_cache, settings):
    """The connection thaws after the lock was lost but before its key expired (memcached keeps
    it a second longer): the late renewal's value is deleted, not left held by nobody."""
    with frozen_alias(lock_cache, settings) as (alias, freeze, thaw):
        held = Lock(unique(), timeout=LEASE, cache=alias, renew=True)
        assert held.acquire()
        freeze(held)
        wait_until(held._extending.locked, "a renewal hangs", 5)
        wait_until(lambda: held.lost, "the lock is given up", 3 * LEASE)
        thaw()
        wait_until(lambda: not held._extending.locked(), "the late renewal returns", 3 * LEASE)
        assert not Lock(held.name, cache=lock_cache).locked(), "the late renewal's value is still held"
