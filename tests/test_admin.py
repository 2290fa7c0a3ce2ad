"""The "Held locks" admin page with Django's test client, on locks in a real cache."""

import re
import uuid

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import Permission, User
from django.core.cache import caches
from django.db import connection, connections
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tasklock import Lock
from tasklock.conf import conf
from tasklock.signals import lock_cleared
from tests.settings import build_caches

pytestmark = pytest.mark.django_db

URL = "/admin/tasklock/heldlock/"


@pytest.fixture(params=["default", "memcached"])
def held(request):
    """Run with locks in Redis (django-redis) or memcached; yields a Lock factory."""
    alias = request.param
    request.getfixturevalue("redis_server" if alias == "default" else "memcached_server")
    made = []

    def take(name, timeout=60):
        lock = Lock(name, timeout=timeout)
        assert lock.acquire()
        made.append(lock)
        return lock

    with override_settings(TASKLOCK={"CACHE": alias, "KEY_PREFIX": f"a{uuid.uuid4().hex[:10]}"}):
        yield take
        for lock in made:
            lock.release()


def user_with(*codenames, username="ops"):
    user = User.objects.create_user(username, password="secret", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="tasklock", codename__in=codenames)
    )
    return user


def client_for(*codenames, **client_options):
    client = Client(**client_options)
    client.force_login(user_with(*codenames))
    return client


def clear_post(*names, confirm=True, **extra):
    data = {"action": "force_clear", "_selected_action": list(names), **extra}
    if confirm:
        data["post"] = "yes"
    return data


def test_url_name_and_permissions_exist():
    assert reverse("admin:tasklock_heldlock_changelist") == URL
    codenames = set(
        Permission.objects.filter(content_type__app_label="tasklock").values_list("codename", flat=True)
    )
    assert codenames == {"view_heldlock", "delete_heldlock"}


def test_anonymous_is_sent_to_login(held):
    response = Client().get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_staff_without_permission_is_refused(held):
    assert client_for().get(URL).status_code == 403


def test_view_only_sees_locks_but_cannot_clear(held):
    lock = held("report:1")
    client = client_for("view_heldlock")
    page = client.get(URL)
    assert page.status_code == 200
    assert "report:1" in page.text and lock.holder.holder in page.text
    assert "force_clear" not in page.text, "the action is not offered"
    forged = client.post(URL, clear_post("report:1"))
    assert forged.status_code in (200, 302)
    assert lock.owned(), "a forged POST clears nothing"
    assert not LogEntry.objects.exists()


def test_delete_permission_confirms_then_clears_and_logs(held):
    lock = held("report:2")
    other = held("report:3")
    heard = []

    def receiver(sender, **kwargs):
        heard.append((kwargs["name"], kwargs["by"], kwargs["via"]))

    client = client_for("view_heldlock", "delete_heldlock")
    assert 'value="force_clear"' in client.get(URL).text
    confirmation = client.post(URL, clear_post("report:2", confirm=False, index="0"))
    assert confirmation.status_code == 200
    assert "Are you sure?" in confirmation.text and "report:2" in confirmation.text
    assert 'name="post" value="yes"' in confirmation.text
    assert lock.owned(), "the confirmation page clears nothing"
    lock_cleared.connect(receiver)
    try:
        done = client.post(URL, clear_post("report:2"))
    finally:
        lock_cleared.disconnect(receiver)
    assert done.status_code == 302
    assert not lock.owned() and lock.release() is False
    assert other.owned()
    assert heard == [("report:2", "ops", "admin")]
    entry = LogEntry.objects.get()
    assert (entry.object_id, entry.action_flag, entry.user.username) == ("report:2", DELETION, "ops")
    assert "Force-cleared 1 held lock." in client.get(URL).text


def test_select_across_clears_every_lock_matching_the_search(held):
    alpha = [held("alpha:1"), held("Alpha:2")]
    beta = held("beta:1")
    client = client_for("view_heldlock", "delete_heldlock")
    confirmation = client.post(f"{URL}?q=ALPHA", clear_post("alpha:1", confirm=False, select_across="1"))
    assert 'name="select_across" value="1"' in confirmation.text
    assert "Alpha:2" in confirmation.text and "beta:1" not in confirmation.text
    client.post(f"{URL}?q=ALPHA", clear_post("alpha:1", select_across="1"))
    assert not any(lock.owned() for lock in alpha)
    assert beta.owned()
    assert LogEntry.objects.count() == 2


def test_csrf_is_enforced(held):
    lock = held("report:4")
    client = client_for("view_heldlock", "delete_heldlock", enforce_csrf_checks=True)
    assert client.post(URL, clear_post("report:4")).status_code == 403
    assert lock.owned()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', client.get(URL).text)[1]
    assert client.post(URL, clear_post("report:4", csrfmiddlewaretoken=token)).status_code == 302
    assert not lock.owned()


def test_names_are_escaped(held):
    name = '<script>alert("x")</script>'
    held(name)
    client = client_for("view_heldlock", "delete_heldlock")
    for page in (client.get(URL), client.post(URL, clear_post(name, confirm=False))):
        assert name not in page.text
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page.text


def test_search_and_pagination_without_a_table(held):
    for n in range(205):
        held(f"page:{n:03d}")
    held("Other:1")
    client = client_for("view_heldlock")
    with CaptureQueriesContext(connection) as queries:
        first = client.get(URL)
    assert not any("tasklock_heldlock" in query["sql"] for query in queries.captured_queries)
    assert first.context["cl"].result_count == 206
    assert len(first.context["cl"].result_list) == 100
    last = client.get(f"{URL}?p=3")
    assert len(last.context["cl"].result_list) == 6
    shown = {
        lock.name
        for page in (first, client.get(f"{URL}?p=2"), last)
        for lock in page.context["cl"].result_list
    }
    assert len(shown) == 206, "pages do not overlap"
    found = client.get(f"{URL}?q=oTHER")
    assert [lock.name for lock in found.context["cl"].result_list] == ["Other:1"]
    assert client.get(f"{URL}?p=9").status_code == 302, "a page past the end goes back to the list"


@pytest.mark.parametrize("alias", ["redis_down", "django_redis_down", "memcached_down"])
def test_page_works_while_the_lock_cache_is_down(alias):
    """The operator needs the page most during an incident: an error message, never a 500."""
    address = build_caches()[alias]["LOCATION"].removeprefix("redis://").removesuffix("/0")
    client = client_for("view_heldlock", "delete_heldlock")
    with override_settings(TASKLOCK={"CACHE": alias}):
        page = client.get(URL)
        assert page.status_code == 200
        assert page.context["cl"].result_count == 0
        errors = [str(m) for m in page.context["messages"] if m.level_tag == "error"]
        assert len(errors) == 1 and address in errors[0] and "refused" in errors[0].lower()
        for confirm in (False, True):
            done = client.post(URL, clear_post("report:1", confirm=confirm), follow=True)
            assert done.status_code == 200
            errors = [str(m) for m in done.context["messages"] if m.level_tag == "error"]
            assert errors and all(address in error for error in errors)
            assert any("clear" in error for error in errors)
    assert not LogEntry.objects.exists()


@pytest.fixture
def admin_locks(lock_cache):
    """Locks in each backend's cache (database: PostgreSQL, outside a transaction)."""
    made = []
    with override_settings(TASKLOCK={"CACHE": lock_cache, "KEY_PREFIX": f"a{uuid.uuid4().hex[:10]}"}):
        yield made
        for lock in made:
            lock.release()


@pytest.mark.django_db(transaction=True)  # the database cache locks outside a transaction
def test_foreign_value_is_shown_as_a_foreign_holder(admin_locks, lock_cache):
    lock = Lock("report:9", timeout=60)
    assert lock.acquire()
    caches[lock_cache].set(f"{conf.KEY_PREFIX}:report:9", {"app": "stats"}, 60)
    client = client_for("view_heldlock", "delete_heldlock")
    page = client.get(URL)
    assert page.status_code == 200
    [shown] = page.context["cl"].result_list
    assert (shown.name, shown.holder) == ("report:9", "(foreign value)")
    assert "(foreign value)" in page.text
    assert client.post(URL, clear_post("report:9")).status_code == 302
    assert caches[lock_cache].get(f"{conf.KEY_PREFIX}:report:9") is None


@pytest.mark.django_db(transaction=True)  # the database cache locks outside a transaction
def test_force_clear_with_atomic_requests_on_the_database_cache(database_cache, monkeypatch):
    """ATOMIC_REQUESTS wraps the view in a transaction: clearing is no lock, so it works there."""
    monkeypatch.setitem(connections.settings["default"], "ATOMIC_REQUESTS", True)
    with override_settings(TASKLOCK={"CACHE": database_cache, "KEY_PREFIX": f"a{uuid.uuid4().hex[:10]}"}):
        lock, other = Lock("report:5", timeout=60), Lock("report:6", timeout=60)
        assert lock.acquire() and other.acquire()
        client = client_for("view_heldlock", "delete_heldlock")
        assert client.post(URL, clear_post("report:5")).status_code == 302
        assert not lock.owned() and other.owned()
        assert LogEntry.objects.get().object_id == "report:5"
        other.release()
