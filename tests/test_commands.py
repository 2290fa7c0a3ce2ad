"""``manage.py locks list`` / ``locks clear`` on every backend, against real servers."""

import json
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta
from io import StringIO

import pytest
from celery import signals as celery_signals
from django.core.cache import caches
from django.core.management import CommandError, call_command
from django.test import override_settings

from tasklock import Lock
from tasklock.backends import get_backend, memcached_index
from tasklock.backends.memcached_index import SEPARATOR
from tasklock.operations.clearing import force_clear, os_user
from tasklock.operations.inventory import Inventory
from tasklock.signals import lock_cleared
from tasklock.values.holder import Holder
from tests.settings import build_caches
from tests.tasks import ping
from tests.waiting import wait_until

JSON_KEYS = {"name", "holder", "task_name", "task_id", "acquired_at", "expires_in", "state", "limit"}
#: names with glob characters, spaces (hashed cache keys) and HTML
NAMES = ["report[1]", "report*x", "a?b", "plain", "has space", "<b>x</b>"]


@pytest.fixture
def prefix():
    """A key prefix of this test's own, so other tests' locks never show up."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def locks(lock_cache, prefix):
    """Run the test with ``lock_cache`` as TASKLOCK's cache; yields a Lock factory."""
    made = []

    def make(name, timeout=60, cache=None):
        held = Lock(name, timeout=timeout, cache=cache)
        assert held.acquire()
        made.append(held)
        return held

    with override_settings(TASKLOCK={"CACHE": lock_cache, "KEY_PREFIX": prefix}):
        yield make
        for held in made:
            held.release()


def locks_json(*args, **options):
    out = StringIO()
    call_command("locks", "list", *args, json=True, stdout=out, **options)
    return json.loads(out.getvalue())


def clear(*args, **options):
    out, err = StringIO(), StringIO()
    call_command("locks", "clear", *args, stdout=out, stderr=err, **options)
    return out.getvalue()


@contextmanager
def running_task(task, task_id):
    """As a worker runs ``task``: between its ``task_prerun`` and ``task_postrun`` signals."""
    celery_signals.task_prerun.send(sender=task, task_id=task_id, task=task, args=(), kwargs={})
    try:
        yield
    finally:
        celery_signals.task_postrun.send(sender=task, task_id=task_id, task=task, args=(), kwargs={})


def test_list_json_has_exactly_the_documented_keys(locks):
    assert locks_json() == []
    plain = locks("plain", timeout=30)
    with running_task(ping, "task-42"):
        locks("in a task", timeout=60)
    listed = {entry["name"]: entry for entry in locks_json()}
    assert set(listed) == {"plain", "in a task"}
    for entry in listed.values():
        assert set(entry) == JSON_KEYS
        assert isinstance(entry["expires_in"], float)
        acquired = datetime.fromisoformat(entry["acquired_at"])
        assert acquired.utcoffset() == timedelta(0)
        assert abs(acquired.timestamp() - time.time()) < 60
    assert listed["plain"]["holder"] == plain.holder.holder
    assert listed["plain"]["holder"].rsplit(":", 1)[1] == str(plain.holder.pid)
    assert listed["plain"]["task_name"] is None and listed["plain"]["task_id"] is None
    assert 0 < listed["plain"]["expires_in"] <= 30
    assert listed["in a task"]["task_name"] == ping.name
    assert listed["in a task"]["task_id"] == "task-42"
    assert 30 < listed["in a task"]["expires_in"] <= 60


def test_expires_in_follows_extend(locks):
    held = locks("extended", timeout=5)
    assert held.extend(500)
    assert locks_json()[0]["expires_in"] > 400


def test_released_and_expired_locks_are_not_listed(locks):
    locks("kept")
    released = locks("released")
    expires = locks("expires", timeout=1)
    released.release()
    gone_by = time.monotonic() + 3  # memcached keeps a lock up to a second past its timeout
    while expires.locked() and time.monotonic() < gone_by:
        time.sleep(0.05)
    assert [entry["name"] for entry in locks_json()] == ["kept"]


def test_table_is_the_default(locks):
    out = StringIO()
    call_command("locks", "list", stdout=out)
    assert "No locks held." in out.getvalue()
    locks("report:7")
    out = StringIO()
    call_command("locks", "list", stdout=out)
    header, row = out.getvalue().splitlines()
    assert header.split() == ["name", "state", "holder", "task_name", "task_id", "acquired_at", "expires_in"]
    assert row.startswith("report:7 ") and " - " in row


def test_match_is_fnmatchcase_on_names_with_glob_characters(locks):
    for name in NAMES:
        locks(name)

    def matched(pattern):
        return sorted(entry["name"] for entry in locks_json(match=pattern))

    assert matched("report[[]1]") == ["report[1]"]
    assert matched("report[*]*") == ["report*x"]
    assert matched("report*") == ["report*x", "report[1]"]
    assert matched("a[?]b") == ["a?b"]
    assert matched("has *") == ["has space"]
    assert matched("PLAIN") == [], "case-sensitive"
    assert matched("<b>*") == ["<b>x</b>"]


def test_clear_names_exits_non_zero_for_a_missing_one(locks):
    held = locks("report[1]")
    kept = locks("kept")
    with pytest.raises(CommandError, match="not held: 'missing'") as raised:
        clear("report[1]", "missing", interactive=False)
    assert raised.value.returncode == 1
    assert [entry["name"] for entry in locks_json()] == ["kept"]
    assert held.release() is False
    assert kept.owned()


def test_find_reads_present_and_absent_names_in_one_batch(locks):
    for name in ("first", "third", "has space"):
        locks(name)
    found = Inventory().find(["first", "second", "has space", "third"])
    assert [entry.name for entry in found] == ["first", "has space", "third"]


def test_clear_match_and_dry_run(locks):
    for name in NAMES:
        locks(name)
    out = clear(match="report[*]*", dry_run=True, interactive=False)
    assert "Would clear 1 lock" in out
    assert len(locks_json()) == len(NAMES)
    clear(match="report*", interactive=False)
    assert sorted(entry["name"] for entry in locks_json()) == sorted(set(NAMES) - {"report[1]", "report*x"})


def test_clear_needs_exactly_one_selection(locks):
    with pytest.raises(CommandError, match="exactly one"):
        clear(interactive=False)
    with pytest.raises(CommandError, match="exactly one"):
        clear("a", all=True, interactive=False)


def test_clear_asks_for_confirmation(locks, monkeypatch):
    locks("asked")
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert "Nothing cleared." in clear("asked")
    assert len(locks_json()) == 1
    monkeypatch.setattr("builtins.input", lambda prompt: "y")
    assert "Cleared 1 lock." in clear("asked")
    assert locks_json() == []


def test_clear_all_leaves_keys_outside_the_prefix_alone(locks, lock_cache, prefix):
    for name in NAMES:
        locks(name)
    cache = caches[lock_cache]
    cache.set("foreign", "value", 60)
    cache.set(f"{prefix}-other:plain", "value", 60)
    with override_settings(TASKLOCK={"CACHE": lock_cache, "KEY_PREFIX": f"{prefix}x"}):
        neighbour = Lock("plain", timeout=60)
        assert neighbour.acquire()
    try:
        clear(all=True, interactive=False)
        assert locks_json() == []
        assert cache.get("foreign") == "value"
        assert cache.get(f"{prefix}-other:plain") == "value"
        assert neighbour.owned()
    finally:
        neighbour.release()
        cache.delete_many(["foreign", f"{prefix}-other:plain"])


def test_cleared_holder_cannot_release_a_newer_holder(locks):
    first = locks("contested")
    assert force_clear("contested", by="ops", via="command")
    second = locks("contested")
    assert first.release() is False
    assert first.extend() is False
    assert second.owned()
    assert [entry["holder"] for entry in locks_json()] == [second.holder.holder]


def test_clear_is_logged_and_signalled(locks, caplog):
    locks("audited")
    heard = []

    def receiver(sender, **kwargs):
        heard.append(kwargs)

    lock_cleared.connect(receiver)
    try:
        clear("audited", interactive=False)
    finally:
        lock_cleared.disconnect(receiver)
    assert heard == [{"signal": lock_cleared, "name": "audited", "by": os_user(), "via": "command"}]
    assert "'audited' force-cleared by" in caplog.text


def test_cache_option_picks_another_cache(locks, prefix, redis_server, memcached_server):
    with override_settings(TASKLOCK={"CACHE": "memcached", "KEY_PREFIX": prefix}):
        elsewhere = Lock("elsewhere", timeout=60)
        assert elsewhere.acquire()
    try:
        # the listing runs on a new adapter's connection (TASKLOCK changed), which the index's
        # noreply append, sent on the acquirer's, may not have reached yet: wait for it
        listed = lambda: [entry["name"] for entry in locks_json(cache="memcached")]  # noqa: E731
        wait_until(lambda: listed() == ["elsewhere"], "the lock listed with --cache memcached", seconds=5)
    finally:
        elsewhere.release()


def test_redis_key_prefix_with_glob_characters_is_escaped(redis_server, prefix):
    """The cache's own KEY_PREFIX can hold glob characters; SCAN must match it literally."""
    base = build_caches()["default"]
    globby = {**base, "KEY_PREFIX": "g*[1]?"}
    similar = {**base, "KEY_PREFIX": "gx1y"}  # matches g*[1]? as a glob
    with override_settings(
        CACHES={**build_caches(), "globby": globby, "similar": similar},
        TASKLOCK={"CACHE": "globby", "KEY_PREFIX": prefix},
    ):
        mine = Lock("mine", timeout=60)
        other = Lock("theirs", timeout=60, cache="similar")
        assert mine.acquire() and other.acquire()
        try:
            assert [entry["name"] for entry in locks_json()] == ["mine"]
            clear(all=True, interactive=False)
            assert other.owned() and not mine.owned()
        finally:
            other.release()


def test_redis_side_keys_are_not_listed(redis_server, prefix):
    """The line, its tickets and a grant sit beside the lock key, which never holds a space;
    they are no locks."""
    with override_settings(TASKLOCK={"CACHE": "default", "KEY_PREFIX": prefix}):
        held = Lock("woken", timeout=60)
        held.acquire()
        client = get_backend().client
        _, line, tickets = get_backend().companions(held._key)
        side = (line, tickets, tickets + " token")
        client.rpush(line, "token")
        client.hset(tickets, "token", "1 1 1 {}")
        client.rpush(tickets + " token", "1 1 {}")
        try:
            assert [entry["name"] for entry in locks_json()] == ["woken"]
            assert Inventory().page(None, 0, 10)[0] == 1
        finally:
            held.release()
            client.delete(*side)


def test_redis_blocked_waiter_gets_the_lock_and_the_listing_shows_it(redis_server, prefix):
    with override_settings(TASKLOCK={"CACHE": "default", "KEY_PREFIX": prefix}):
        held = Lock("handed", timeout=60)
        held.acquire()
        waiter = Lock("handed", timeout=60)
        thread = threading.Thread(target=waiter.acquire, kwargs={"blocking": True, "wait": 5})
        thread.start()
        tickets = get_backend().companions(held._key)[2]
        wait_until(lambda: get_backend().client.exists(tickets), "the waiter joins the line")
        assert [entry["name"] for entry in locks_json()] == ["handed"], "one lock, however many wait"
        held.release()
        thread.join()
        assert waiter.owned()
        assert [entry["name"] for entry in locks_json()] == ["handed"]
        waiter.release()
        assert locks_json() == []


@pytest.fixture
def memcached_locks(memcached_server, prefix):
    with override_settings(TASKLOCK={"CACHE": "memcached", "KEY_PREFIX": prefix}):
        yield get_backend()


def shard_entries(backend, name):
    key = backend.key(name)
    raw = backend.client.get(backend.index.shard_of(key)) or b""
    return raw.split(SEPARATOR).count(key.encode())


def test_memcached_index_is_pruned_when_listed(memcached_locks, monkeypatch):
    backend = memcached_locks
    monkeypatch.setattr(memcached_index, "PRUNE_ODDS", 10**9)  # no prune on release here
    for _ in range(3):
        held = Lock("again", timeout=60)
        held.acquire()
        held.release()
    kept = Lock("again", timeout=60)
    kept.acquire()
    assert shard_entries(backend, "again") == 4, "one append per acquire; release removes nothing"
    assert [entry["name"] for entry in locks_json()] == ["again"]
    assert shard_entries(backend, "again") == 1, "repeats and dead entries pruned"
    kept.release()
    assert locks_json() == []
    assert shard_entries(backend, "again") == 0


def test_memcached_release_now_and_then_prunes_its_shard(memcached_locks, monkeypatch):
    backend = memcached_locks
    monkeypatch.setattr(memcached_index, "PRUNE_ODDS", 10**9)
    for _ in range(3):
        with Lock("pruned", timeout=60):
            pass
    kept = Lock("pruned", timeout=60)
    kept.acquire()
    assert shard_entries(backend, "pruned") == 4
    monkeypatch.setattr(memcached_index, "PRUNE_ODDS", 1)
    kept.release()
    assert shard_entries(backend, "pruned") == 0


def test_memcached_listing_under_concurrent_acquire_and_release(memcached_locks):
    """Churning threads never hide a lock held throughout; once they stop, the listing is exact."""
    steady = [Lock(f"steady:{n}", timeout=60) for n in range(20)]
    for held in steady:
        assert held.acquire()
    stop = threading.Event()
    survivors = []

    def churn(worker):
        n = 0
        while not stop.is_set():
            held = Lock(f"churn:{worker}:{n % 7}", timeout=60)
            if held.acquire() and n % 5:
                held.release()
            elif held:
                survivors.append(held)
            n += 1

    threads = [threading.Thread(target=churn, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(10):
            names = {entry["name"] for entry in locks_json()}
            assert {held.name for held in steady} <= names
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    expected = {held.name for held in steady} | {held.name for held in survivors}
    assert {entry["name"] for entry in locks_json()} == expected
    for held in steady + survivors:
        held.release()
    assert locks_json() == []


FOREIGN = "(foreign value)"


def foreign_entry(name):
    return {"name": name, "holder": FOREIGN, "task_name": None, "task_id": None, "acquired_at": None}


def test_foreign_values_inside_the_prefix_are_listed_as_foreign(locks, lock_cache, prefix):
    """An app's own value inside the prefix (pickled, or bytes that are not UTF-8) is a holder
    tasklock did not write: listed as foreign, named from its key, and clearable."""
    cache, backend = caches[lock_cache], get_backend()
    locks("mine")
    overwritten = locks("taken")
    cache.set(f"{prefix}:taken", {"hits": 1}, 60)  # over a held lock's key: every backend sees it
    cache.set(f"{prefix}:stats", {"hits": 2}, 60)  # a key tasklock never wrote
    expected = {"mine", "taken"} if lock_cache == "memcached" else {"mine", "taken", "stats"}
    if lock_cache != "database":  # raw bytes that are not UTF-8 (a database value is text)
        backend.client.set(backend.key("raw"), b"\xff\xfe\x80", 60)
        expected |= set() if lock_cache == "memcached" else {"raw"}
    listed = {entry["name"]: entry for entry in locks_json()}
    assert set(listed) == expected, "memcached lists only keys its index saw tasklock take"
    for name in expected - {"mine"}:
        entry = listed[name]
        assert {key: entry[key] for key in foreign_entry(name)} == foreign_entry(name)
        assert entry["expires_in"] is None or 0 < entry["expires_in"] <= 60
    assert listed["mine"]["holder"] != FOREIGN
    out = StringIO()
    call_command("locks", "list", stdout=out)
    assert any(line.startswith("taken ") and FOREIGN in line for line in out.getvalue().splitlines())
    assert "Cleared 1 lock." in clear("taken", interactive=False)
    assert cache.get(f"{prefix}:taken") is None
    assert overwritten.release() is False
    clear(all=True, interactive=False)
    assert locks_json() == []
    if lock_cache == "memcached":
        assert cache.get(f"{prefix}:stats") == {"hits": 2}, "unseen by the index, so never cleared"
        cache.delete(f"{prefix}:stats")
    else:
        assert cache.get(f"{prefix}:stats") is None, "inside the prefix: cleared with the rest"


def test_foreign_value_under_a_hashed_key_is_found_by_name(locks, lock_cache, prefix):
    cache = caches[lock_cache]
    key = get_backend().key("has space")
    if lock_cache == "database":
        cache.set(key.split(":", 2)[2], "not a holder", 60)  # DatabaseCache adds ":1:" again
    else:
        get_backend().client.set(key, b"\xff", 60)
    assert [entry.holder for entry in Inventory().find(["has space"])] == [FOREIGN]
    assert "Cleared 1 lock." in clear("has space", interactive=False)


def redis_with_key_prefix(key_prefix):
    """Both Redis backends with a cache KEY_PREFIX of their own."""
    built = build_caches()
    return {
        **built,
        "spaced": {**built["default"], "KEY_PREFIX": key_prefix},
        "spaced_django": {**built["redis"], "KEY_PREFIX": key_prefix},
    }


@pytest.mark.parametrize("alias", ["spaced", "spaced_django"])
def test_redis_cache_key_prefix_with_a_space(redis_server, prefix, alias):
    with override_settings(
        CACHES=redis_with_key_prefix("my app"), TASKLOCK={"CACHE": alias, "KEY_PREFIX": prefix}
    ):
        held = [Lock(name, timeout=60) for name in ("plain", "has space")]
        assert all(lock.acquire() for lock in held)
        client = get_backend().client
        client.set(get_backend().key("plain") + " waiting", 1)
        try:
            assert [entry["name"] for entry in locks_json()] == ["has space", "plain"]
            out = StringIO()
            call_command("locks", "list", stdout=out)
            assert "No locks held." not in out.getvalue()
            assert "Cleared 2 locks." in clear(all=True, interactive=False)
            assert not any(lock.owned() for lock in held)
        finally:
            client.delete(get_backend().key("plain") + " waiting")


def test_table_escapes_control_characters(locks, lock_cache):
    name = "red\x1b[31mx\nforged row\u2028"
    with running_task(ping, "id\x1b[2J"):
        locks(name)
    backend = get_backend()
    holder = Holder(
        "t", "bad host", "h\x1b]0;x\x07", 1, "t", time.time(), time.time() + 60, 60, "task\r", None
    )
    assert backend.add(backend.key("bad host"), holder.encode(), 60)
    out = StringIO()
    call_command("locks", "list", stdout=out)
    text = out.getvalue()
    assert not any(char in text for char in "\x1b\x07\r\u2028")
    _, *rows = text.splitlines()
    assert len(rows) == 2
    assert any(row.startswith(r"red\x1b[31mx\nforged row\u2028 ") and r"id\x1b[2J" in row for row in rows)
    assert any(r"h\x1b]0;x\x07:1" in row and r"task\r" in row for row in rows)
    assert {entry["name"] for entry in locks_json()} == {name, "bad host"}, "JSON keeps the names"
    assert force_clear("bad host", by="test", via="command")


def test_clear_with_stdin_closed_clears_nothing(locks, monkeypatch):
    held = locks("kept")
    monkeypatch.setattr("sys.stdin", StringIO(""))
    with pytest.raises(CommandError, match="--yes") as raised:
        clear(all=True)
    assert raised.value.returncode != 0
    assert held.owned()


@pytest.mark.parametrize("subcommand", [("list",), ("clear", "--all", "--yes")])
def test_unknown_cache_alias_is_a_command_error(subcommand):
    with pytest.raises(CommandError, match="'nope' is not an alias in CACHES"):
        call_command("locks", *subcommand, "--cache", "nope", stdout=StringIO())


@pytest.mark.parametrize("alias", ["redis_down", "django_redis_down", "memcached_down"])
@pytest.mark.parametrize("subcommand", [("list",), ("clear", "x", "--yes")])
def test_down_cache_error_names_the_server_and_the_reason(alias, subcommand):
    down = build_caches()[alias]["LOCATION"]
    address = down.removeprefix("redis://").removesuffix("/0")
    with pytest.raises(CommandError) as raised:
        call_command("locks", *subcommand, "--cache", alias, stdout=StringIO(), stderr=StringIO())
    message = str(raised.value)
    assert address in message
    assert "refused" in message.lower()


class SqliteCacheRouter:
    """The ``sqlite_database`` cache's table lives on the ``sqlite`` database."""

    def db_for_write(self, model, **hints):
        return "sqlite" if model._meta.db_table == "tasklock_sqlite_cache" else None

    db_for_read = db_for_write


@pytest.fixture(params=["database", "sqlite_database"])
def database_cache_on(request):
    """The database cache on PostgreSQL, then on SQLite (whose LIKE ignores case)."""
    if request.param == "database":
        request.getfixturevalue("database_cache")
        yield "database"
        return
    sqlite = {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "tasklock_sqlite_cache"}
    with override_settings(
        CACHES={**build_caches(), "sqlite_database": sqlite},
        DATABASE_ROUTERS=["tests.test_commands.SqliteCacheRouter"],
    ):
        call_command("createcachetable", "tasklock_sqlite_cache", database="sqlite")
        yield "sqlite_database"


@pytest.mark.django_db(transaction=True, databases=["default", "sqlite"])
def test_database_listing_is_case_sensitive(database_cache_on, prefix):
    """Another deployment's prefix in other case is not ours: not listed, not cleared."""
    with override_settings(TASKLOCK={"CACHE": database_cache_on, "KEY_PREFIX": prefix.upper()}):
        theirs = Lock("job", timeout=60)
        assert theirs.acquire()
    try:
        with override_settings(TASKLOCK={"CACHE": database_cache_on, "KEY_PREFIX": prefix}):
            mine = Lock("mine", timeout=60)
            assert mine.acquire()
            assert [entry["name"] for entry in locks_json()] == ["mine"]
            assert "Cleared 1 lock." in clear(all=True, interactive=False)
        assert theirs.owned()
    finally:
        theirs.release()


@pytest.mark.parametrize("alias", ["default", "redis"])
def test_redis_force_clear_wakes_a_blocked_waiter(redis_server, prefix, alias):
    """A force-clear hands the lock to the waiter in line at once, as a release does."""
    with override_settings(TASKLOCK={"CACHE": alias, "KEY_PREFIX": prefix}):
        held = Lock("stuck", timeout=60)
        assert held.acquire()
        waiter = Lock("stuck", timeout=60)
        got = []
        thread = threading.Thread(target=lambda: got.append(waiter.acquire(blocking=True, wait=10)))
        thread.start()
        tickets = get_backend().companions(held._key)[2]
        wait_until(lambda: get_backend().client.hexists(tickets, waiter.token), "the waiter joins the line")
        assert force_clear("stuck", by="test", via="command")
        assert Holder.decode(get_backend().client.get(held._key)).token == waiter.token
        thread.join(5)
        assert got == [True]
        assert waiter.release()
