"""A renewing Lock's life cycle (issue 17, item 6): a ``lock_acquired`` receiver that raises,
a Lock dropped without ``release()``, one Lock reused many times, a fork mid-renewal."""

from __future__ import annotations

import gc
import os
import time
import uuid
import weakref

import pytest

from tasklock import Lock
from tasklock.backends import get_backend
from tasklock.backends.redis import RedisBackend
from tasklock.core.renewer import renewer
from tasklock.integrations.uniqueness import requeue
from tasklock.signals import lock_acquired
from tests.waiting import wait_until


def unique(prefix: str = "cycle") -> str:
    return f"{prefix}:{uuid.uuid4().hex}"


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_raising_lock_acquired_receiver_leaves_no_lock_nobody_can_release(error, lock_cache, caplog):
    """An Exception is logged and the acquire stands; anything else (an interrupt) is raised,
    and the lock is given back first."""

    def receiver(sender, lock, waited, **kwargs):
        raise error("a lock_acquired receiver with a bug")

    lock_acquired.connect(receiver)
    held = Lock(unique(), timeout=1, cache=lock_cache, renew=True)
    try:
        if error is KeyboardInterrupt:
            with pytest.raises(KeyboardInterrupt):
                held.acquire()
            assert not held and not held.locked() and not renewer().watching(held)
            return
        assert held.acquire() is True
        assert "a lock_acquired receiver with a bug" in caplog.text
        assert held.owned() and renewer().watching(held)
        assert held.release() is True
        assert not held.locked() and not renewer().watching(held)
    finally:
        lock_acquired.disconnect(receiver)


def test_a_renewing_lock_dropped_without_release_stops_renewing_and_expires(lock_cache, caplog):
    """The renewer does not keep a dropped Lock alive: renewal stops, a warning names the
    lock, and the lock expires with its lease."""
    held = Lock(unique(), timeout=0.6, cache=lock_cache, renew=True)
    assert held.acquire()
    name, probe = held.name, Lock(held.name, cache=lock_cache)
    dropped = weakref.ref(held)
    del held
    gc.collect()
    assert dropped() is None, "something keeps the dropped Lock alive"
    wait_until(lambda: f"lock {name!r} was garbage-collected while held" in caplog.text, "a warning", 5)
    wait_until(lambda: not probe.locked(), "the dropped lock expires", 5)
    assert probe.acquire()
    probe.release()


def test_reusing_one_renewing_lock_never_duplicates_its_renewals(redis_server, monkeypatch):
    """Ten acquire/release cycles of one Lock, each held 0.7 s with renewals due every 0.3 s:
    at most two renewals per cycle (a duplicate entry per cycle made 65 in 10)."""
    held = Lock(unique(), timeout=0.9, renew=True)
    renewals = []
    replace_if = RedisBackend.replace_if

    def counted(self, key, *args):
        if key == held._key:
            renewals.append(time.monotonic())
        return replace_if(self, key, *args)

    monkeypatch.setattr(RedisBackend, "replace_if", counted)
    cycles = 10
    for _ in range(cycles):
        assert held.acquire()
        time.sleep(0.7)  # the hold: two renewals fall due
        assert held.release() is True
    assert len(renewals) <= 2 * cycles, f"{len(renewals)} renewals in {cycles} cycles of two each"
    assert not renewer().watching(held)


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_fork_during_a_renewal_leaves_the_child_a_usable_lock(redis_server):
    """The child of a fork made while a renewal holds the lock's mutex can still extend() and
    requeue() it (the renewing thread does not exist in the child)."""
    held = Lock(unique(), timeout=6, renew=True)  # the renewal is due in 2 s
    assert held.acquire()
    client = get_backend().client
    client.client_pause(3000, all=False)  # write commands (scripts) wait: the renewal hangs in it
    try:
        wait_until(held._extending.locked, "a renewal under way", 10)
        child = os.fork()
        if child == 0:  # pragma: no cover - the child
            code = 1
            try:
                held.extend()
                requeue(held, 5)
                code = 0
            finally:
                os._exit(code)
        status: list[int] = []

        def child_exited() -> bool:
            pid, code = os.waitpid(child, os.WNOHANG)
            status.extend([code] if pid else [])
            return bool(pid)

        try:
            wait_until(child_exited, "the child's extend() and requeue() return", 20)
        finally:
            if not status:
                os.kill(child, 9)
                os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status[0]) == 0
    finally:
        client.execute_command("CLIENT UNPAUSE")
        held.release_quietly()
