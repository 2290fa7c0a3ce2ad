"""Known bugs (issue 19): one Redis line serves a name's ``limit=1`` and ``limit=N`` waiters.

A waiter of one limit can be handed the name by a release of the other limit, in the moment
between joining the line and finding out that the limits differ. The interleavings are forced
by letting the real adapter's calls through a wrapper that runs another holder's step (on the
same real Redis) right after the waiter's own call; nothing of the lock is faked.
"""

import time
import uuid

import pytest

from tasklock import Lock, LockError
from tasklock.backends import get_backend
from tasklock.core.drivers import drive
from tasklock.values.slots import Record
from tests.waiting import wait_until

CACHE = "default"


class After:
    """The real adapter; ``step()`` runs once, right after the waiter's first ``operation``."""

    def __init__(self, backend, operation, step):
        self.backend, self.operation, self.step = backend, operation, step

    def __getattr__(self, name):
        method = getattr(self.backend, name)
        if name != self.operation or self.step is None:
            return method

        def then(*args):
            reply = method(*args)
            step, self.step = self.step, None
            step()
            return reply

        return then


def _name() -> str:
    return f"limit-mixed:{uuid.uuid4().hex}"


@pytest.mark.xfail(strict=True, reason="bug: a refused limit=1 waiter keeps the slot a release handed it")
@pytest.mark.usefixtures("redis_server")
def test_a_refused_limit_one_waiter_leaves_no_slot_behind():
    """A blocking ``limit=1`` acquire of a full ``limit=2`` name joins the line (its script
    does not look at the limit), then reads the record and raises ``LockError``. A release in
    between hands the freed slot to it (``refill``); its clean-up (``giving_back``) deletes
    only a plain value, so the slot stays taken until the waiter's TTL by nobody."""
    name, backend = _name(), get_backend(CACHE)
    first, second = Lock(name, 30, CACHE, limit=2), Lock(name, 30, CACHE, limit=2)
    assert first.acquire() and second.acquire()
    waiter = Lock(name, 30, CACHE)
    attempt = waiter._attempt(True, 5, time.monotonic())
    with pytest.raises(LockError, match=r"limit=2.*limit=1"):
        drive(backend.acquiring(attempt), After(backend, "take_or_queue", first.release), waiter._failed)
    record = Record.decode(backend.get(backend.key(name)))
    held_by = [slot.holder.token for slot in record.slots]
    assert held_by == [second.token], f"slots held by {held_by}; the refused waiter is {waiter.token}"


@pytest.mark.xfail(strict=True, reason="bug: a limit=1 release hands a plain lock to a limit=2 waiter")
@pytest.mark.usefixtures("redis_server")
def test_a_limit_n_waiter_is_never_handed_a_plain_lock():
    """A ``limit=2`` waiter in line while the name's slots lapse (dead holders); a ``limit=1``
    lock takes the free name, and its release hands the name over to the first waiter in line
    as a plain lock (``hand_over``, no record). The waiter's acquire returns True for a
    ``limit=2`` slot that is not one: it does not own it, cannot release it, and the name
    stays held with ``limit=1`` until the waiter's TTL."""
    name, backend = _name(), get_backend(CACHE)
    lapsing = [Lock(name, 0.3, CACHE, limit=2) for _ in range(2)]
    assert all(each.acquire() for each in lapsing)
    waiter = Lock(name, 30, CACHE, limit=2)
    attempt = waiter._attempt(True, 5, time.monotonic())

    def plain_lock_comes_and_goes() -> None:
        wait_until(lambda: backend.get(backend.key(name)) is None, "the slots lapse", 5)
        plain = Lock(name, 30, CACHE)
        assert plain.acquire() and plain.release()

    grant = drive(
        backend.acquiring(attempt), After(backend, "take_or_queue", plain_lock_comes_and_goes), waiter._failed
    )
    stored = backend.get(backend.key(name))
    handed = grant is not None and stored == grant.value and waiter.token in stored
    assert not handed, f"the limit=2 waiter (token {waiter.token}) was handed a plain lock: {stored}"
