"""Django tasks (``django.tasks``; the backport on Django 5.2) run by real ``db_worker``
processes in the tests (issue 21); each locked body records when it ran, as tests/tasks.py's."""

import os
import time

import redis
from django.conf import settings

from tasklock import task_lock
from tasklock.django_tasks import unique_task
from tests.tasks import record

try:
    from django.tasks import task
except ImportError:  # Django 5.2: the django-tasks backport
    from django_tasks import task

#: the queue of the killed worker's tests: only the worker a test starts takes its tasks
KILL_QUEUE = "tasklock-kill"


def _recorded(game_id: int, run_id: str, hold: float, running: bool = False) -> str:
    """A body's work: ``hold`` seconds, recorded as a span of ``run_id`` (and, ``running``, that
    it started, with its pid, under ``holding:<run_id>``)."""
    started = time.monotonic()
    if running:
        redis.Redis.from_url(settings.CELERY_RESULT_BACKEND).rpush(f"holding:{run_id}", os.getpid())
    time.sleep(hold)
    record(run_id, game_id, started)
    return "ran"


@task()
def ping() -> str:
    return "pong"


@task()
@task_lock(key="game_id", timeout=30, on_locked="skip")
def skip_game(game_id: int, run_id: str, hold: float = 0.3) -> str:
    return _recorded(game_id, run_id, hold)


@task()
@task_lock(key="game_id", timeout=30, on_locked="retry", countdown=0.2)
def retry_game(game_id: int, run_id: str, hold: float = 0.2) -> str:
    return _recorded(game_id, run_id, hold)


@task()
@task_lock(key="game_id", timeout=30, on_locked="raise")
def raise_game(game_id: int) -> str:
    return "ran"


@task()
@task_lock(key="game_id", timeout=30, countdown=0.1)
def default_game(game_id: int) -> str:
    """No ``on_locked``: a Django task run by a worker retries."""
    return "ran"


@task()
@task_lock(key="game_id", timeout=30, on_locked="wait", wait=0.2, countdown=0.1)
def wait_game(game_id: int) -> str:
    return "ran"


@task(backend="immediate")
@task_lock(key="game_id", timeout=30)
def immediate_game(game_id: int) -> str:
    """On a backend that cannot defer: the default policy raises."""
    return "ran"


@task(takes_context=True)
@task_lock(key="item", timeout=30)
def report_holder(context, item: int) -> str | None:
    """The stored holder metadata of this task's own lock (the context is not in its name)."""
    from tasklock.backends import get_backend

    backend = get_backend()
    return backend.get(backend.key(f"{report_holder.module_path}:{item}"))


@task(queue_name=KILL_QUEUE)
@task_lock(key="held:{item}", timeout=3)
def hold_briefly_leased(item: str) -> str:
    """Holds its lock (a 3 s lease, renewed) until its worker is killed."""
    redis.Redis.from_url(settings.CELERY_RESULT_BACKEND).rpush(f"holding:{item}", os.getpid())
    time.sleep(600)
    return "finished"


@task(queue_name=KILL_QUEUE)
@task_lock(key="held:{item}", timeout=60, on_locked="skip")
def hold_long_leased(item: str, seconds: float = 600) -> str:
    """Holds its lock (a 60 s lease, renewed) for ``seconds``."""
    redis.Redis.from_url(settings.CELERY_RESULT_BACKEND).rpush(f"holding:{item}", os.getpid())
    time.sleep(seconds)
    return "ran"


@unique_task()
@task_lock(key="game_id", timeout=30, unique="until_executed")
def rebuild(game_id: int, run_id: str, hold: float = 0.5) -> str:
    return _recorded(game_id, run_id, hold, running=True)


@unique_task()
@task_lock(key="game_id", timeout=30, unique="until_and_while_executing", on_duplicate="raise")
def rebuild_or_raise(game_id: int, run_id: str, hold: float = 0.5) -> str:
    return _recorded(game_id, run_id, hold, running=True)


@task()
@task_lock(key="game_id", timeout=30, unique="until_executed")
def unique_without_unique_task(game_id: int) -> str:
    """Declared with Django's own @task(): nothing takes its queue lock (E004)."""
    return "ran"


@task(backend="immediate")
@task_lock(key="game_id", timeout=30, on_locked="retry")
def immediate_retry(game_id: int) -> str:
    """retry on a backend that cannot defer (E005); it raises when the lock is held."""
    return "ran"


@unique_task()
@task_lock(key="game_id", timeout=30, unique="until_executing")
def refresh_queued_once(game_id: int, run_id: str, hold: float = 0.5) -> str:
    """Locked from enqueue until a worker starts it; its body runs unlocked."""
    return _recorded(game_id, run_id, hold, running=True)
