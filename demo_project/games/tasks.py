"""The demo's story: score feeds for a few games; each game's record takes one update at a time.

Every task takes the same lock, ``game:<id>``, so two updates of one game never overlap,
whichever task they come from, while different games are updated side by side. What each
task does when the game is busy differs:

- ``update_game`` (a new score from a feed) must not be lost: it retries a bit later;
- ``refresh_scoreboard`` (a cosmetic refresh) is pointless twice at once: it skips;
- ``publish_result`` (the final whistle) waits for the running update, up to 10 s.
"""

import time
from contextlib import nullcontext

from celery import Task, shared_task

from tasklock import task_lock

from .timeline import Timeline

#: one lock per game, shared by every task below
GAME_LOCK = "game:{game_id}"
#: how long each body works while holding the game's lock
WORK_SECONDS = 0.4


def game_lock(game_id: int) -> str:
    """The name of the lock every task below holds while it works on ``game_id``."""
    return GAME_LOCK.format(game_id=game_id)


def _work_on(task: Task, game_id: int) -> str:
    timeline = Timeline.of_this_worker()
    worker = (task.request.hostname or "?").partition("@")[0]
    who = f"{task.name.rpartition('.')[2]} on {worker}"
    with timeline.holding(game_lock(game_id), who) if timeline else nullcontext():
        time.sleep(WORK_SECONDS)
    return who


@shared_task(bind=True, max_retries=50)
@task_lock(key=GAME_LOCK, on_locked="retry", countdown=0.5)
def update_game(self: Task, game_id: int) -> str:
    return _work_on(self, game_id)


@shared_task(bind=True)
@task_lock(key=GAME_LOCK, on_locked="skip")
def refresh_scoreboard(self: Task, game_id: int) -> str:
    return _work_on(self, game_id)


@shared_task(bind=True, max_retries=50)
@task_lock(key=GAME_LOCK, on_locked="wait", wait=10)
def publish_result(self: Task, game_id: int) -> str:
    return _work_on(self, game_id)
