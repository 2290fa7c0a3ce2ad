"""A limited name (``limit=N``) in ``locks list``, ``held_locks()``, ``clear()`` and the admin:
a row per holder, each with its own holder and expiry; clearing frees every holder."""

import logging
import threading
import uuid
from io import StringIO

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.core.management import call_command
from django.test import override_settings

import tasklock
from tasklock import Lock
from tasklock.backends import get_backend
from tasklock.operations.changelist import HELD_FOR, HeldLockQuery
from tasklock.signals import lock_cleared
from tests.tasks import ping
from tests.test_admin import URL, clear_post, client_for
from tests.test_admin_activity import cells
from tests.test_commands import locks_json, running_task
from tests.waiting import wait_until

NAME = "export:tenant 7"  # a space: a hashed key on Redis, so the name comes from the values


@pytest.fixture
def held(lock_cache):
    """Run with ``lock_cache`` as TASKLOCK's cache, under a prefix of the test's own; yields a
    factory of Locks taken as task ``task_id`` runs, released (or found gone) at the end."""
    made = []

    def take(name, timeout=60, limit=3, task_id=None):
        lock = Lock(name, timeout=timeout, limit=limit)
        with running_task(ping, task_id or uuid.uuid4().hex):
            assert lock.acquire()
        made.append(lock)
        return lock

    prefix = f"l{uuid.uuid4().hex[:10]}"
    with override_settings(TASKLOCK={"CACHE": lock_cache, "KEY_PREFIX": prefix}):
        yield take
        for lock in made:
            lock.release()


def two_of_three(held):
    """Two holders of ``NAME`` (limit 3) with their own tasks and timeouts, and a plain lock."""
    first = held(NAME, timeout=30, task_id="first")
    return first, held(NAME, timeout=90, task_id="second"), held("plain", limit=1, task_id="plain")


def test_list_json_has_a_row_per_holder_with_its_own_expiry(held):
    two_of_three(held)
    listed = locks_json()
    limited = sorted((e for e in listed if e["name"] == NAME), key=lambda e: e["task_id"])
    assert [(e["task_id"], e["limit"], e["state"]) for e in limited] == [
        ("first", 3, "running"),
        ("second", 3, "running"),
    ]
    assert 25 < limited[0]["expires_in"] <= 30 and 85 < limited[1]["expires_in"] <= 90
    assert [e["limit"] for e in listed if e["name"] == "plain"] == [1]


def test_the_table_names_a_limited_lock_with_its_holders_and_limit(held):
    two_of_three(held)
    out = StringIO()
    call_command("locks", "list", stdout=out)
    lines = out.getvalue().splitlines()
    assert len([line for line in lines if line.startswith(f"{NAME} (2/3) ")]) == 2
    assert len([line for line in lines if line.startswith("plain ")]) == 1


def test_held_locks_yields_each_holder(held):
    first, second, _ = two_of_three(held)
    records = sorted(tasklock.held_locks("export:*"), key=lambda r: r.task_id)
    assert [(r.name, r.task_id, r.limit, r.holders) for r in records] == [
        (NAME, "first", 3, 2),
        (NAME, "second", 3, 2),
    ]
    assert {r.holder for r in records} == {first.holder.holder, second.holder.holder}
    assert records[0].acquired_at <= records[1].acquired_at


def test_clear_frees_every_holder_logs_them_and_signals_once(held, caplog):
    first, second, plain = two_of_three(held)
    sent = []

    def receiver(**kwargs):
        sent.append(kwargs["name"])

    lock_cleared.connect(receiver)
    try:
        with caplog.at_level(logging.WARNING, logger="tasklock"):
            removed = tasklock.clear(NAME)
    finally:
        lock_cleared.disconnect(receiver)
    assert removed.name == NAME and removed.limit == 3 and removed.task_id == "first"
    assert sent == [NAME]
    assert (
        "(limit 3) force-cleared" in caplog.text and "id first" in caplog.text and "id second" in caplog.text
    )
    assert not first.owned() and not second.owned() and plain.owned()
    assert not first.release() and not second.release()
    again = [held(NAME, task_id=f"again {n}") for n in range(3)]
    assert all(lock.owned() for lock in again), "every slot is free again"
    assert tasklock.clear("plain").limit == 1


def test_locks_clear_counts_the_name_once(held):
    first, second, _ = two_of_three(held)
    out = StringIO()
    call_command("locks", "clear", NAME, "--yes", stdout=out)
    assert "Cleared 1 lock." in out.getvalue()
    assert out.getvalue().count(f"{NAME} (2/3)") == 2
    assert not first.locked() and not second.owned()


@pytest.mark.django_db(transaction=True)  # the database cache's locks are seen outside a transaction
def test_admin_shows_each_holder_and_force_clear_frees_them_all(held):
    first, second, plain = two_of_three(held)
    client = client_for("view_heldlock", "delete_heldlock")
    page = client.get(URL)
    rows = [(r.name, r.task_id) for r in page.context["cl"].result_list]
    assert sorted(rows) == [(NAME, "first"), (NAME, "second"), ("plain", "plain")]
    assert page.text.count('<td class="field-slots">2/3</td>') == 2
    confirmation = client.post(URL, clear_post(NAME, confirm=False, index="0"))
    assert "first" in confirmation.text and "second" in confirmation.text
    assert first.owned() and second.owned(), "the confirmation page clears nothing"
    client.post(URL, clear_post(NAME))
    assert not first.owned() and not second.owned() and plain.owned()
    entry = LogEntry.objects.get()
    assert (entry.object_id, entry.action_flag) == (NAME, DELETION)
    assert "2 of 3 holders" in entry.get_change_message()
    after = client.get(URL).text
    assert "Force-cleared 1 held lock." in after and "already gone" not in after


@pytest.mark.parametrize("order", [None, HELD_FOR, f"-{HELD_FOR}"])
def test_a_page_counts_names_and_keeps_a_names_holders_together(held, order):
    held("a", task_id="a1")
    held("b", limit=1, task_id="plain")
    held("a", task_id="a2")
    held("c", task_id="c1")
    held("c", task_id="c2")
    query = HeldLockQuery(order=order)
    pages = [query.page(offset, 1) for offset in range(3)]
    assert query.count() == 3 and HeldLockQuery(order=order).count() == 3
    assert sorted(len(page) for page in pages) == [1, 2, 2]
    assert sorted((h.name, h.task_id) for page in pages for h in page) == [
        ("a", "a1"),
        ("a", "a2"),
        ("b", "plain"),
        ("c", "c1"),
        ("c", "c2"),
    ]
    if order is not None:  # a name takes the place of its oldest (or youngest) holder
        names = [[(h.name, h.task_id) for h in page] for page in pages]
        oldest_first = [[("a", "a1"), ("a", "a2")], [("b", "plain")], [("c", "c1"), ("c", "c2")]]
        youngest_first = [[("c", "c2"), ("c", "c1")], [("a", "a2"), ("a", "a1")], [("b", "plain")]]
        assert names == (oldest_first if order.startswith("-") else youngest_first)


def test_a_cluster_lists_and_clears_each_holder(cluster_cache):
    with override_settings(TASKLOCK={"CACHE": cluster_cache, "KEY_PREFIX": f"l{uuid.uuid4().hex[:10]}"}):
        held = [Lock(NAME, timeout=timeout, limit=3) for timeout in (30, 90)]
        assert all(lock.acquire() for lock in held)
        try:
            expiries = sorted(info.expires_in for info in tasklock.held_locks())
            assert len(expiries) == 2 and 25 < expiries[0] <= 30 and 85 < expiries[1] <= 90
            assert tasklock.clear(NAME).limit == 3
            assert list(tasklock.held_locks()) == [] and not any(lock.owned() for lock in held)
        finally:
            for lock in held:
                lock.release()


@pytest.mark.django_db
def test_the_waiting_column_counts_a_limited_names_line(redis_server):
    with override_settings(TASKLOCK={"CACHE": "default", "KEY_PREFIX": f"l{uuid.uuid4().hex[:10]}"}):
        held = [Lock(NAME, timeout=60, limit=2) for _ in range(2)]
        assert all(lock.acquire() for lock in held)
        waiter = Lock(NAME, timeout=60, limit=2)
        got = []
        thread = threading.Thread(target=lambda: got.append(waiter.acquire(blocking=True, wait=30)))
        thread.start()
        try:
            line = get_backend().companions(get_backend().key(NAME), 2)[2]  # the slot waiters' line
            wait_until(lambda: get_backend().client.hlen(line) == 1, "the waiter joins the line")
            page = client_for("view_heldlock").get(URL)
            assert cells(page, "waiting") == ["1", "1"] and cells(page, "slots") == ["2/2", "2/2"]
            assert held[0].release()
            thread.join(30)
            assert got == [True] and waiter.owned()
        finally:
            thread.join(30)
            for lock in (*held, waiter):
                lock.release()
