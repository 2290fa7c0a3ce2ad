"""Locks used from several threads (Celery's ``-P threads``), on every backend.

Django gives each thread its own cache object, but a Lock built in one thread (a module-level
lock) used to keep that thread's client: pymemcache's client is not thread-safe, so threads
hung, raised raw errors or were refused a free lock.
"""

import threading
import uuid

import pytest
from django.db import connections

from tasklock import Lock

THREADS = 4
CYCLES = 40
#: no thread may still run after this (a hung client blocks forever)
JOIN_TIMEOUT = 60


def run_threads(target, count: int = THREADS) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(number: int) -> None:
        try:
            target(number)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()  # the database cache's per-thread connection

    threads = [threading.Thread(target=guarded, args=(n,), daemon=True) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    hung = [thread.name for thread in threads if thread.is_alive()]
    assert not hung, f"threads hung: {hung}"
    return errors


@pytest.mark.parametrize("built_in", ["each thread", "the main thread"])
def test_distinct_names_never_contend(lock_cache, built_in):
    names = [f"threads:{uuid.uuid4().hex}" for _ in range(THREADS)]
    shared = [Lock(name, timeout=30, cache=lock_cache) for name in names]
    refused: list[str] = []

    def work(number: int) -> None:
        for _ in range(CYCLES):
            held = shared[number] if built_in == "the main thread" else Lock(names[number], 30, lock_cache)
            if not held.acquire():
                refused.append(f"acquire returned False on the free lock {held.name}")
                continue
            assert held.owned() and held.locked()
            assert held.extend(30)
            assert held.release() is True

    errors = run_threads(work)
    assert errors == [] and refused == []
    assert not any(Lock(name, cache=lock_cache).locked() for name in names)


@pytest.mark.parametrize("built_in", ["each thread", "the main thread"])
def test_one_name_is_held_by_one_thread_at_a_time(lock_cache, built_in):
    name = f"threads:{uuid.uuid4().hex}"
    shared = [Lock(name, timeout=30, cache=lock_cache) for _ in range(THREADS)]
    inside, most, taken = [0], [0], [0]
    count = threading.Lock()

    def work(number: int) -> None:
        for _ in range(CYCLES // 2):
            held = shared[number] if built_in == "the main thread" else Lock(name, 30, lock_cache)
            assert held.acquire(blocking=True, wait=30), "a waiter gave up"
            with count:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
                taken[0] += 1
            assert held.owned()
            with count:
                inside[0] -= 1
            assert held.release() is True

    errors = run_threads(work)
    assert errors == []
    assert most[0] == 1 and taken[0] == THREADS * (CYCLES // 2)


def test_one_lock_object_handed_between_threads(lock_cache):
    """A Lock acquired in one thread is released by another (a shared module-level lock)."""
    held = Lock(f"threads:{uuid.uuid4().hex}", timeout=30, cache=lock_cache)
    for _ in range(3):
        assert run_threads(lambda n: held.acquire() or pytest.fail("not acquired"), 1) == []
        assert held.owned()
        assert run_threads(lambda n: held.release() or pytest.fail("not released"), 1) == []
        assert not held.locked()
