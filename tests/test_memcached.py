"""memcached specifics: whole-second clock, exptime limits, the index of held locks."""

import time
import uuid
from collections import deque

import pytest

from tasklock import Lock, held_locks
from tasklock.backends import get_backend
from tasklock.backends.memcached_index import SEPARATOR

#: locks taken one after another, this far apart, cover every phase of memcached's tick
PHASES, SPACING = 25, 0.04
#: how long before its local deadline each lock is checked
MARGIN = 0.1


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


@pytest.mark.usefixtures("memcached_server")
def test_a_lock_never_vanishes_before_its_timeout():
    """memcached's clock ticks once a second: an item stored for N s lives between N-1 and N s
    by the wall clock. A 1 s lock taken at any phase of the tick must still be held just
    before its local deadline (``bool(lock)`` is still True then)."""
    start = time.monotonic()
    planned = deque(start + SPACING * n for n in range(PHASES))
    taken: deque[Lock] = deque()
    vanished = []
    while planned or taken:
        check_at = taken[0]._deadline - MARGIN if taken else float("inf")
        if planned and planned[0] <= check_at:
            sleep_until(planned.popleft())
            held = Lock(f"phase:{uuid.uuid4().hex}", timeout=1, cache="memcached")
            assert held.acquire()
            taken.append(held)
            continue
        sleep_until(check_at)
        held = taken.popleft()
        if held and not Lock(held.name, cache="memcached").locked():
            vanished.append(round(time.monotonic() - held._acquired_at, 3))
        held.release()
    assert vanished == [], f"locks gone while still held locally, after {vanished} s"


@pytest.mark.usefixtures("memcached_server")
def test_refused_acquires_leave_no_index_entries_and_a_later_holder_is_listed():
    """An acquire sends its index note in the same write as its ``add``, so a refused ``add``
    still appends one: a key refused once sends its note only after a stored ``add``, and
    contenders polling a held lock do not grow its index shard."""
    name = f"index:{uuid.uuid4().hex}"
    holder = Lock(name, timeout=10, cache="memcached")
    assert holder.acquire()
    for _ in range(50):
        assert not Lock(name, timeout=10, cache="memcached").acquire()
    index = get_backend("memcached").index
    key = get_backend("memcached").key(name)
    assert index.client.get(index.shard_of(key)).split(SEPARATOR).count(key.encode()) <= 2
    assert holder.release()
    later = Lock(name, timeout=10, cache="memcached")
    assert later.acquire()  # the contended key's note follows its stored add
    assert name in [record.name for record in held_locks(cache="memcached")]
    assert later.release()
