"""System checks: each id fires in its case and stays silent otherwise; a silenced E002 still
cannot lock; ``manage.py check`` stops the demo project on LocMemCache and DummyCache."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from celery import Celery, current_app, signals
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from tasklock import Lock, task_lock
from tasklock.backends.redis import write_client
from tasklock.checks.caches import check_ignore_exceptions
from tasklock.checks.tasks import check_time_limits, time_limit_warnings

ROOT = Path(__file__).parents[1]
LOCMEM = "django.core.cache.backends.locmem.LocMemCache"
DUMMY = "django.core.cache.backends.dummy.DummyCache"
FILE = "django.core.cache.backends.filebased.FileBasedCache"
PYLIBMC = "django.core.cache.backends.memcached.PyLibMCCache"


class SubclassedLocMemCache(LocMemCache):
    """A project's own LocMemCache: still per-process."""


def messages(deploy: bool = False) -> dict[str, list[str]]:
    """tasklock's check messages by id, run through Django's registry."""
    found: dict[str, list[str]] = {}
    for message in run_checks(tags=["tasklock"], include_deployment_checks=deploy):
        found.setdefault(message.id, []).append(f"{message.msg} HINT: {message.hint}")
    return found


def cache_messages() -> dict[str, list[str]]:
    """All but W003: with a cache that cannot be built, Celery's Django fixup fails the task
    import that W003 does (reported as W003), once something imported the suite's tasks."""
    return {key: found for key, found in messages().items() if key != "tasklock.W003"}


@pytest.fixture
def more_caches(settings, tmp_path):
    """The suite's caches plus a file-based one and a LocMemCache subclass."""
    settings.CACHES = {
        **settings.CACHES,
        "file": {"BACKEND": FILE, "LOCATION": str(tmp_path / "cache")},
        "sub_locmem": {"BACKEND": f"{__name__}.SubclassedLocMemCache"},
    }
    return settings


# tasklock.E003 and settings that must not crash the other checks


def test_valid_settings_are_silent(settings):
    settings.TASKLOCK = {"CACHE": "default", "KEY_PREFIX": "locks", "TIMEOUT": 60}
    assert messages() == {}


@pytest.mark.parametrize(
    "raw, problems",
    [
        ({"TIMEOUT": 0}, ['TASKLOCK["TIMEOUT"]']),
        ({"TIMEOUT": float("inf")}, ['TASKLOCK["TIMEOUT"] must be a finite number']),
        ({"TIMEOUT": float("nan")}, ['TASKLOCK["TIMEOUT"] must be a finite number']),
        ({"TIMEOUT": 1e9}, ['TASKLOCK["TIMEOUT"] must be at most 31536000 seconds (365 days)']),
        ({"TIMEOUT": "60", "CACHE": 5}, ['TASKLOCK["CACHE"]', 'TASKLOCK["TIMEOUT"]']),
        ({"TIMOUT": 60}, ['TASKLOCK["TIMOUT"] is not a tasklock setting']),
        ({"TRUSTED_BACKENDS": {PYLIBMC: "mongo"}}, ["unknown family 'mongo'"]),
        ({"TRUSTED_BACKENDS": ["x"]}, ['TASKLOCK["TRUSTED_BACKENDS"]']),
        ({"ALLOW_PROCESS_LOCAL_CACHE": "yes", "CACHE": "locmem"}, ['TASKLOCK["ALLOW_PROCESS_LOCAL_CACHE"]']),
        ("default", ["TASKLOCK must be a dict"]),
    ],
)
def test_invalid_settings_are_e003_and_crash_nothing(settings, raw, problems):
    settings.TASKLOCK = raw
    found = messages(deploy=True)  # every check, the deploy ones included, runs without raising
    assert len(found["tasklock.E003"]) == len(problems)
    for problem in problems:
        assert any(problem in message for message in found["tasklock.E003"]), found
    if raw == {"ALLOW_PROCESS_LOCAL_CACHE": "yes", "CACHE": "locmem"}:
        assert "tasklock.E002" in found, "an invalid opt-in is no opt-in"
    with pytest.raises(SystemCheckError, match=r"tasklock\.E003"):
        call_command("check")


def test_invalid_timeout_does_not_crash_the_time_limit_check(settings):
    settings.TASKLOCK = {"TIMEOUT": -1}
    app = Celery("bad-timeout", set_as_current=False)
    app.task(time_limit=600, shared=False)(task_lock(())(noop))
    assert time_limit_warnings(app) == []


# tasklock.E001


def test_e001_cache_alias_missing(settings):
    settings.TASKLOCK = {"CACHE": "locks"}
    found = messages()
    assert list(found) == ["tasklock.E001"]
    assert "'locks'" in found["tasklock.E001"][0] and "one of: default, " in found["tasklock.E001"][0]


# tasklock.E002 and W006


@pytest.mark.parametrize(
    "alias, why",
    [
        ("locmem", "every process"),
        ("sub_locmem", "every process"),
        ("dummy", "always returns True"),
        ("file", "has_key() then calls set()"),
    ],
)
def test_e002_no_cross_process_add(more_caches, alias, why):
    more_caches.TASKLOCK = {"CACHE": alias}
    found = messages()
    assert list(found) == ["tasklock.E002"]
    assert why in found["tasklock.E002"][0] and "django-redis" in found["tasklock.E002"][0]
    with pytest.raises(SystemCheckError, match=r"tasklock\.E002"):
        call_command("check")


@pytest.mark.parametrize("alias", ["locmem", "sub_locmem"])
def test_w006_allowed_locmem_is_a_warning(more_caches, alias):
    more_caches.TASKLOCK = {"CACHE": alias, "ALLOW_PROCESS_LOCAL_CACHE": True}
    found = messages()
    assert list(found) == ["tasklock.W006"]
    assert "single-process test suite" in found["tasklock.W006"][0]
    call_command("check")  # a warning does not stop a management command


@pytest.mark.parametrize("alias", ["dummy", "file"])
def test_allow_process_local_cache_does_not_let_dummy_or_file_through(more_caches, alias):
    more_caches.TASKLOCK = {"CACHE": alias, "ALLOW_PROCESS_LOCAL_CACHE": True}
    assert list(messages()) == ["tasklock.E002"]


@pytest.mark.parametrize("alias", ["locmem", "sub_locmem", "dummy", "file"])
def test_silenced_e002_still_cannot_lock(more_caches, alias):
    """The runtime guard: silencing the check does not ship the seed's bug."""
    more_caches.TASKLOCK = {"CACHE": alias}
    more_caches.SILENCED_SYSTEM_CHECKS = ["tasklock.E002"]
    call_command("check")  # passes: the error is silenced
    with pytest.raises(ImproperlyConfigured, match="refuses"):
        Lock("silenced")

    @task_lock(())
    def body() -> str:
        return "ran"

    with pytest.raises(ImproperlyConfigured, match="refuses"):
        body()


# tasklock.W001, W002, W007: the other backends


def test_supported_backends_are_silent(settings):
    for alias in ("default", "redis", "memcached"):
        settings.TASKLOCK = {"CACHE": alias}
        assert messages() == {}, alias


def test_w001_database_cache(settings):
    settings.TASKLOCK = {"CACHE": "database"}
    found = messages()
    assert list(found) == ["tasklock.W001"]
    assert "expired rows" in found["tasklock.W001"][0] and "MAX_ENTRIES (300)" in found["tasklock.W001"][0]
    settings.CACHES = {
        **settings.CACHES,
        "database": {**settings.CACHES["database"], "OPTIONS": {"MAX_ENTRIES": 100_000}},
    }
    assert "MAX_ENTRIES (100000)" in messages()["tasklock.W001"][0]


def test_w002_unknown_backend_and_how_to_trust_it(settings):
    """PyLibMCCache (pylibmc is not installed: Django's own cache check would fail on it)."""
    settings.CACHES = {**settings.CACHES, "pylibmc": {"BACKEND": PYLIBMC, "LOCATION": "127.0.0.1:11211"}}
    settings.TASKLOCK = {"CACHE": "pylibmc"}
    found = cache_messages()
    assert list(found) == ["tasklock.W002"]
    assert f'"TRUSTED_BACKENDS": {{"{PYLIBMC}": "redis"}}' in found["tasklock.W002"][0]
    settings.TASKLOCK = {"CACHE": "pylibmc", "TRUSTED_BACKENDS": {PYLIBMC: "memcached"}}
    assert cache_messages() == {}


def test_w002_backend_that_does_not_import(settings):
    settings.CACHES = {**settings.CACHES, "broken": {"BACKEND": "no.such.Cache"}}
    settings.TASKLOCK = {"CACHE": "broken"}
    found = cache_messages()
    assert list(found) == ["tasklock.W002"] and "'no.such.Cache'" in found["tasklock.W002"][0]


@pytest.mark.parametrize(
    "location, fires",
    [
        ("127.0.0.1:11211", False),
        (["127.0.0.1:11211"], False),
        ("127.0.0.1:11211;127.0.0.1:11212", True),
        ("127.0.0.1:11211,127.0.0.1:11212", True),
        (["127.0.0.1:11211", "127.0.0.1:11212"], True),
    ],
)
def test_w007_memcached_with_several_servers(settings, location, fires):
    settings.CACHES = {**settings.CACHES, "memcached": {**settings.CACHES["memcached"], "LOCATION": location}}
    settings.TASKLOCK = {"CACHE": "memcached"}
    assert list(messages()) == (["tasklock.W007"] if fires else [])


# tasklock.W003: time limits against lock timeouts


def noop(*args: object) -> None:
    """A task body."""


def locked_tasks_app(**conf: object) -> Celery:
    """A throwaway Celery app with locked and unlocked tasks, with and without time limits."""
    app = Celery(f"w003-{uuid.uuid4().hex}", set_as_current=False)
    app.conf.update(conf)

    @app.task(name="hard_over", shared=False, time_limit=600)
    @task_lock(timeout=60, renew=False)
    def hard_over(x: int) -> None: ...

    @app.task(name="soft_over", shared=False, bind=True, soft_time_limit=61)
    @task_lock("x", timeout=60, renew=False)
    def soft_over(self, x: int) -> None: ...

    @app.task(name="within", shared=False, bind=True, time_limit=60, soft_time_limit=50)
    @task_lock(timeout=60, renew=False)
    def within(self, x: int) -> None: ...

    @app.task(name="no_limit", shared=False)
    @task_lock(timeout=60, renew=False)
    def no_limit(x: int) -> None: ...

    @app.task(name="default_timeout", shared=False, time_limit=59)
    @task_lock(renew=False)
    def default_timeout(x: int) -> None: ...

    @app.task(name="renewing", shared=False, time_limit=10_000)
    @task_lock(timeout=60)
    def renewing(x: int) -> None: ...

    @app.task(name="unlocked", shared=False, time_limit=10_000)
    def unlocked(x: int) -> None: ...

    return app


def warned(found: list) -> dict[str, str]:
    """W003 messages about the throwaway app's own tasks (a new Celery app also gets every
    shared task, such as the suite's tests.tasks once something imported them)."""
    assert {message.id for message in found} <= {"tasklock.W003"}
    return {message.obj: message.msg for message in found if not message.obj.startswith("tests.")}


def test_w003_own_limits_longer_than_lock_timeout():
    found = warned(time_limit_warnings(locked_tasks_app()))
    assert sorted(found) == ["hard_over", "soft_over"]
    assert "600 s (time_limit)" in found["hard_over"] and "timeout of 60 s" in found["hard_over"]
    assert "61 s (soft_time_limit)" in found["soft_over"]


def test_w003_app_defaults_and_tasklock_timeout(settings):
    app = locked_tasks_app(task_time_limit=120, task_soft_time_limit=30)
    assert sorted(warned(time_limit_warnings(app))) == ["hard_over", "no_limit", "soft_over"]
    settings.TASKLOCK = {"TIMEOUT": 50}
    app = locked_tasks_app()
    found = warned(time_limit_warnings(app))
    assert "default_timeout" in found and "timeout of 50 s" in found["default_timeout"]


@pytest.fixture
def current(request):
    """Make a Celery app current for the test, then put the previous one back."""
    previous = current_app._get_current_object()

    def make_current(app: Celery) -> Celery:
        app.set_current()
        return app

    yield make_current
    previous.set_current()


@pytest.fixture
def tasks_package(tmp_path, monkeypatch):
    """Write an importable package whose tasks.py holds ``source``; forget it afterwards."""
    name = f"w003_{uuid.uuid4().hex}"
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(source: str) -> str:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
        (tmp_path / name / "tasks.py").write_text(textwrap.dedent(source))
        return name

    yield write
    for module in [module for module in sys.modules if module.startswith(name)]:
        del sys.modules[module]


def test_w003_forces_task_autodiscovery(tasks_package, current):
    """``manage.py check`` alone never imports tasks.py: the check must, as a worker does."""
    package = tasks_package(
        """
        from celery import current_app
        from tasklock import task_lock

        @current_app.task(name="discovered", time_limit=900, shared=False)
        @task_lock(timeout=60, renew=False)
        def discovered(x): ...
        """
    )
    app = current(Celery("discovery", set_as_current=False))
    app.autodiscover_tasks([package])  # lazy, as in a project's celery.py
    assert f"{package}.tasks" not in sys.modules
    found = messages()
    assert list(found) == ["tasklock.W003"] and "900 s (time_limit)" in found["tasklock.W003"][0]


def test_w003_reports_a_task_module_that_does_not_import(tasks_package, current):
    package = tasks_package("import no_such_module_anywhere\n")
    app = current(Celery("broken", set_as_current=False))
    app.autodiscover_tasks([package])
    (message,) = check_time_limits()
    assert message.id == "tasklock.W003" and "no_such_module_anywhere" in message.msg


def test_suite_tasks_are_silent_and_the_django_fixup_does_not_recurse(current):
    """Celery's Django fixup runs the system checks when task modules are imported: the
    check's own import must not set off another import from inside them."""
    from tests.celery_app import app

    current(app)
    sends = []

    def count(**kwargs: object) -> None:
        sends.append(kwargs)

    signals.import_modules.connect(count, sender=app)
    try:
        assert check_time_limits() == []
    finally:
        signals.import_modules.disconnect(count, sender=app)
    assert len(sends) == 1
    assert "tests.tasks.update_game" in app.tasks


def test_checks_run_without_a_celery_app():
    """tests.settings defines no Celery app: ``check`` runs on Celery's fallback app."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    result = subprocess.run(
        [sys.executable, "-m", "django", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


# deploy: tasklock.W004 and W005


@pytest.fixture
def eviction_policy(redis_server):
    """Set the harness Redis's maxmemory-policy, putting the old one back afterwards."""
    client = write_client(caches["default"])
    before = client.config_get("maxmemory-policy")["maxmemory-policy"]
    yield lambda policy: client.config_set("maxmemory-policy", policy)
    client.config_set("maxmemory-policy", before)


@pytest.mark.parametrize("alias", ["default", "redis"])
def test_w004_redis_eviction_policy(settings, eviction_policy, alias):
    settings.TASKLOCK = {"CACHE": alias}
    eviction_policy("noeviction")
    assert messages(deploy=True) == {}
    for policy in ("allkeys-lru", "volatile-ttl"):
        eviction_policy(policy)
        found = messages(deploy=True)
        assert list(found) == ["tasklock.W004"] and repr(policy) in found["tasklock.W004"][0]
        assert messages() == {}, "a deploy check only runs with --deploy"


def test_w004_unreachable_redis_is_reported_not_raised(settings):
    settings.TASKLOCK = {"CACHE": "django_redis_down"}
    found = messages(deploy=True)
    assert list(found) == ["tasklock.W004"] and "could not ask" in found["tasklock.W004"][0]


def test_w004_w005_only_for_redis(settings):
    for alias in ("memcached", "database"):
        settings.TASKLOCK = {"CACHE": alias}
        assert set(messages(deploy=True)) <= {"tasklock.W001"}


def test_w005_ignore_exceptions(settings):
    settings.TASKLOCK = {"CACHE": "redis_down"}  # OPTIONS["IGNORE_EXCEPTIONS"] = True
    found = messages(deploy=True)
    assert set(found) == {"tasklock.W004", "tasklock.W005"}, "the server is down: W004 could not run"
    assert "IGNORE_EXCEPTIONS" in found["tasklock.W005"][0]
    assert "tasklock.W005" not in messages()

    settings.TASKLOCK = {"CACHE": "default"}
    assert check_ignore_exceptions() == []
    settings.DJANGO_REDIS_IGNORE_EXCEPTIONS = True
    assert [message.id for message in check_ignore_exceptions()] == ["tasklock.W005"]
    settings.CACHES = {
        **settings.CACHES,
        "default": {**settings.CACHES["default"], "OPTIONS": {"IGNORE_EXCEPTIONS": False}},
    }
    assert check_ignore_exceptions() == [], "the alias's own OPTIONS win over the global setting"
    settings.TASKLOCK = {"CACHE": "redis"}  # Django's own RedisCache has no IGNORE_EXCEPTIONS
    assert check_ignore_exceptions() == []


# the demo project


@pytest.mark.parametrize("backend", [LOCMEM, DUMMY, None])
def test_manage_py_check_stops_the_demo_on_unsafe_caches(backend):
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    if backend:
        env["DEMO_CACHE_BACKEND"] = backend
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if backend:
        assert result.returncode != 0
        assert "tasklock.E002" in result.stderr, result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert "tasklock.E" not in result.stdout + result.stderr
