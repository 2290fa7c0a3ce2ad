"""The same locked job as ``tasks.py``, as Django tasks (``django.tasks``; the django-tasks
backport on Django 5.2) run by ``django-tasks-db``'s ``db_worker``: ``manage.py demo
--django-tasks``. They hold the same lock, ``game:<id>``, with the same policies; a retry is
the same task enqueued again to run after the countdown."""

import os
import time
from contextlib import nullcontext

from tasklock import task_lock

from .tasks import GAME_LOCK, WORK_SECONDS, game_lock
from .timeline import Timeline

try:
    from django.tasks import task
except ImportError:  # Django 5.2: the django-tasks backport
    from django_tasks import task

#: the demo's own queue of Django tasks (its db_workers take only this one)
QUEUE = "tasklock-demo"


def _work_on(name: str, game_id: int) -> str:
    timeline = Timeline.of_this_worker()
    who = f"{name} on db_worker {os.getpid()}"
    with timeline.holding(game_lock(game_id), who) if timeline else nullcontext():
        time.sleep(WORK_SECONDS)
    return who


@task(queue_name=QUEUE)
@task_lock(key=GAME_LOCK, on_locked="retry", countdown=0.5)
def update_game(game_id: int) -> str:
    return _work_on("update_game", game_id)


@task(queue_name=QUEUE)
@task_lock(key=GAME_LOCK, on_locked="skip")
def refresh_scoreboard(game_id: int) -> str:
    return _work_on("refresh_scoreboard", game_id)


@task(queue_name=QUEUE)
@task_lock(key=GAME_LOCK, on_locked="wait", wait=10, countdown=0.5)
def publish_result(game_id: int) -> str:
    return _work_on("publish_result", game_id)


#: what each game receives, in order, as the Celery burst
BURST = (
    update_game,
    update_game,
    refresh_scoreboard,
    update_game,
    refresh_scoreboard,
    update_game,
    publish_result,
)
