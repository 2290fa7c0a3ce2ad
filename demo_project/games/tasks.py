"""The demo's story: score feeds for a few games; each game's record takes one update at a time.

Every task takes the same lock, ``game:<id>``, so two updates of one game never overlap,
whichever task they come from, while different games are updated side by side. What each
task does when the game is busy differs:

- ``update_game`` (a new score from a feed) must not be lost: it retries a bit later;
- ``refresh_scoreboard`` (a cosmetic refresh) is pointless twice at once: it skips;
- ``publish_result`` (the final whistle) waits for the running update, up to 10 s.

Two more acts show a lock's lifetime: ``rebuild_game`` runs long, and the demo kills the
process running it; ``save_score`` writes with its lock's fencing token to a store that
refuses an older token than the last it accepted.
"""

import os
import time
from contextlib import nullcontext

from celery import Task, shared_task
from django.conf import settings

from tasklock import held_lock, task_lock

from .scores import ScoreStore
from .timeline import RUN_VARIABLE, Timeline

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


@shared_task(bind=True, track_started=True)
@task_lock(key=GAME_LOCK, on_locked="skip")
def rebuild_game(self: Task, game_id: int) -> str:
    """A long rebuild of a game's record (the demo kills the process running it)."""
    time.sleep(20)
    return "rebuilt"


@shared_task(bind=True)
@task_lock(key=GAME_LOCK, on_locked="wait", wait=10)
def save_score(self: Task, game_id: int, score: str, stall: float = 0) -> dict:
    """Save a score with this holder's fencing token; a ``stall`` > 0 first waits (up to that
    many seconds) until somebody else saved a newer score, as a holder stalled by a long pause
    would find on waking up."""
    held = held_lock()
    store = ScoreStore(settings.REDIS_URL, os.environ.get(RUN_VARIABLE, "adhoc"))
    deadline = time.monotonic() + stall
    while time.monotonic() < deadline and store.last(game_id)[1] <= held.fencing_token:
        time.sleep(0.05)
    return {"score": score, "token": held.fencing_token, "lost": held.lost,
            "accepted": store.save(game_id, score, held.fencing_token)}  # fmt: skip
