"""The admin's "Held locks" page shows activity (issue 22): how long each lock has been held,
sortable across pages, and how many wait in line for it (Redis; real waiters, in threads)."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.test import override_settings

from tasklock import Lock
from tasklock.admin import duration
from tasklock.backends import get_backend
from tasklock.operations.waiters import waiting
from tests.test_admin import URL, client_for
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db


def line_length(name: str, cache: str | None = None) -> int:
    """The raw length of lock ``name``'s line (dead waiters included)."""
    backend = get_backend(cache)
    return backend.client.llen(backend.companions(backend.key(name))[1])


@contextmanager
def in_line(holder: Lock, count: int) -> Iterator[list[bool]]:
    """``count`` threads blocked on ``holder``'s lock, in its line; released in turn once
    ``holder`` lets go at the end. Yields what their acquires answered (filled at the end)."""
    got: list[bool] = []

    def wait_for_it() -> None:
        waiter = Lock(holder.name, timeout=60, cache=holder.cache_alias)
        acquired = waiter.acquire(blocking=True, wait=60)
        got.append(acquired)
        if acquired:
            waiter.release()

    threads = [threading.Thread(target=wait_for_it) for _ in range(count)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: line_length(holder.name, holder.cache_alias) == count, f"{count} waiters in line")
        yield got
    finally:
        holder.release()
        for thread in threads:
            thread.join(60)


@pytest.fixture
def prefix(redis_server):
    with override_settings(TASKLOCK={"CACHE": "default", "KEY_PREFIX": f"w{uuid.uuid4().hex[:10]}"}):
        yield


def cells(page, field: str) -> list[str]:
    """The text of column ``field`` in each row of a changelist page, top to bottom."""
    return re.findall(rf'<td class="field-{field}[^"]*">(.*?)</td>', page.text)


def test_waiters_in_line_are_counted_per_lock(prefix):
    hot, quiet = Lock("hot:1", timeout=60), Lock("quiet:1", timeout=60)
    assert hot.acquire() and quiet.acquire()
    try:
        with in_line(hot, 3) as got:
            page = client_for("view_heldlock").get(URL)
            shown = dict(zip(cells(page, "name"), cells(page, "waiting"), strict=True))
            assert shown == {"hot:1": "3", "quiet:1": "0"}
        assert got == [True, True, True]
    finally:
        quiet.release()


def test_a_dead_waiters_ticket_is_not_counted(prefix):
    """A ticket whose alive time has passed (its waiter died) stays in the hash until a release
    skips it: it is no waiter."""
    holder = Lock("stale:1", timeout=60)
    assert holder.acquire()
    backend = get_backend()
    key = backend.key(holder.name)
    try:
        with in_line(holder, 1):
            backend.client.hset(backend.companions(key)[2], "dead-token", "1 60000 2 {}")
            assert waiting([holder.name, "nobody:1"]) == [1, 0]
    finally:
        backend.client.delete(*backend.companions(key)[1:])


def test_no_line_on_memcached_shows_a_dash(memcached_server):
    with override_settings(TASKLOCK={"CACHE": "memcached", "KEY_PREFIX": f"w{uuid.uuid4().hex[:10]}"}):
        held = Lock("polled:1", timeout=60)
        assert held.acquire()
        try:
            assert waiting(["polled:1"]) is None
            assert cells(client_for("view_heldlock").get(URL), "waiting") == ["-"]
        finally:
            held.release()


def test_sorted_by_how_long_each_lock_has_been_held_across_pages(prefix):
    made = [Lock(f"age:{n:03d}", timeout=60) for n in range(130)]
    for lock in made:  # each acquired after the one before: age:000 is the oldest
        assert lock.acquire()
    try:
        client = client_for("view_heldlock")
        column = client.get(URL).context["cl"].list_display.index("held_for")
        oldest_first = [client.get(f"{URL}?o=-{column}&p={p}") for p in (1, 2)]
        names = [held.name for page in oldest_first for held in page.context["cl"].result_list]
        assert names == [lock.name for lock in made]
        youngest_first = client.get(f"{URL}?o={column}")
        assert [held.name for held in youngest_first.context["cl"].result_list][:3] == [
            "age:129",
            "age:128",
            "age:127",
        ]
        assert 'class="sortable column-held_for sorted descending"' in oldest_first[0].text
        searched = client.get(f"{URL}?o=-{column}&q=age:12")
        assert [held.name for held in searched.context["cl"].result_list] == [f"age:12{n}" for n in range(10)]
    finally:
        for lock in made:
            lock.release()


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.04, "0.0 s"),
        (4.25, "4.2 s"),
        (42.9, "42 s"),
        (185, "3 min 05 s"),
        (7620, "2 h 07 min"),
        (273600, "3 d 4 h"),
    ],
)
def test_durations(seconds, shown):
    assert duration(seconds) == shown


def test_waiters_on_a_cluster(cluster_cache):
    """Each lock's line lives in its own slot: counted lock by lock, on the node serving it."""
    names = [f"cluster-line:{uuid.uuid4().hex}" for _ in range(3)]
    holders = [Lock(name, timeout=60, cache=cluster_cache) for name in names]
    assert all(holder.acquire() for holder in holders)
    try:
        with in_line(holders[1], 2):
            assert waiting(names, cluster_cache) == [0, 2, 0]
    finally:
        holders[0].release()
        holders[2].release()
