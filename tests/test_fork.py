"""A process that used locks, then forks (issue 17, item 1), on every backend.

The children of a parent that used a lock — a plain one, a renewing one, and one it still
holds — contend for one name with blocking acquires. Nothing of the parent's may reach them:
a shared socket makes children hang, read each other's replies, or believe they hold a lock
another process holds. Each child writes down when it held the lock; the parent sweeps the
intervals for overlaps.
"""

import itertools
import json
import os
import signal
import tempfile
import time
import traceback
import uuid

import pytest
from django.db import connections

from tasklock import Lock
from tests.waiting import wait_until

#: the parent forks while its renewer thread runs: the case under test
pytestmark = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")

CHILDREN = 10
ACQUIRES = 30
#: how long the lock is held by each grant (s)
HOLD = 0.001
#: a child waits at most this long for one grant; the whole run, at most this long
WAIT, DEADLINE = 30, 60


def contend(cache: str, name: str, out: str) -> None:
    """A child's work: ``ACQUIRES`` blocking acquires of ``name``; intervals or the error to ``out``."""
    intervals, error = [], None
    try:
        for _ in range(ACQUIRES):
            held = Lock(name, timeout=10, cache=cache)
            if not held.acquire(blocking=True, wait=WAIT):
                raise AssertionError(f"no grant within {WAIT} s")
            began = time.monotonic()
            time.sleep(HOLD)
            intervals.append((began, time.monotonic()))
            if not held.release():
                raise AssertionError("release found the lock gone")
    except BaseException:
        error = traceback.format_exc()
    with open(out, "w") as file:
        json.dump({"intervals": intervals, "error": error}, file)


def fork_children(cache: str, name: str, directory: str) -> list[int]:
    pids = []
    for number in range(CHILDREN):
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            try:
                contend(cache, name, os.path.join(directory, f"{number}.json"))
            finally:
                os._exit(0)
        pids.append(pid)
    return pids


def reap(pids: list[int]) -> list[int]:
    """Wait for the children until ``DEADLINE``; SIGKILL the ones still running: the hung."""
    running = set(pids)
    deadline = time.monotonic() + DEADLINE
    while running and time.monotonic() < deadline:
        running -= {pid for pid in running if os.waitpid(pid, os.WNOHANG)[0]}
        time.sleep(0.01)
    for pid in running:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return sorted(running)


def overlaps(intervals: list[list[float]]) -> int:
    spans = sorted(intervals)
    return sum(1 for a, b in itertools.pairwise(spans) if b[0] < a[1])


def test_children_of_a_process_that_used_locks(lock_cache):
    name = f"fork:{uuid.uuid4().hex}"
    with Lock(f"{name}:plain", timeout=10, cache=lock_cache):
        pass
    renewed = Lock(f"{name}:renewed", timeout=1, cache=lock_cache, renew=True)
    assert renewed.acquire() and renewed.release()
    kept = Lock(f"{name}:kept", timeout=3, cache=lock_cache, renew=True)
    assert kept.acquire()  # held, and renewed by the parent's renewer thread, across the fork
    connections.close_all()  # Django's rule for its database connections, before a fork
    directory = tempfile.mkdtemp(prefix="tasklock-fork-")

    hung = reap(fork_children(lock_cache, name, directory))

    results = []
    for number in range(CHILDREN):
        path = os.path.join(directory, f"{number}.json")
        if os.path.exists(path):
            with open(path) as file:
                results.append(json.load(file))
    errors = [result["error"] for result in results if result["error"]]
    intervals = [span for result in results for span in result["intervals"]]
    assert hung == [], f"{len(hung)} of {CHILDREN} children hung"
    assert errors == []
    assert len(intervals) == CHILDREN * ACQUIRES
    assert overlaps(intervals) == 0
    # the parent still locks, and kept its lock through the children's contention
    with Lock(name, timeout=10, cache=lock_cache) as again:
        assert again.owned()
    wait_until(lambda: kept.holder.expires_at > kept.holder.acquired_at + 3, "a renewal after the fork")
    assert kept.owned() and not kept.lost
    assert kept.release()


def test_a_lock_held_across_a_fork_is_the_parents_alone(lock_cache):
    """A forked child's copy of a Lock its parent holds holds nothing: it releases, extends and
    owns nothing, and acquiring it makes a holder with a token of its own."""
    name = f"fork-held:{uuid.uuid4().hex}"
    held = Lock(name, timeout=30, cache=lock_cache)
    assert held.acquire()
    out = tempfile.mktemp(prefix="tasklock-fork-held-")
    connections.close_all()  # the database cache's connection is Django's: not shared with the child
    pid = os.fork()
    if pid == 0:
        try:
            seen = [bool(held), held.owned(), held.extend(), held.release(), held.locked(), held.acquire()]
            with open(out, "w") as file:
                json.dump({"seen": seen, "token": held.token}, file)
        finally:
            os._exit(0)
    wait_until(lambda: os.waitpid(pid, os.WNOHANG)[0] == pid, DEADLINE)
    with open(out) as file:
        child = json.load(file)
    assert child["seen"] == [False, False, False, False, True, False]
    assert child["token"] != held.token
    assert held.owned() and held.release()
