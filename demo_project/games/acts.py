"""The demo's last two acts: a lock's lifetime.

- A worker process dies mid-rebuild (SIGKILL): the worker's main process frees its lock
  within milliseconds, where a lock on a TTL alone stays taken for the whole TTL.
- An operator force-clears a lock whose holder still works; another holder takes it and
  saves a newer score. The first holder's late write carries an older fencing token, and
  the score store refuses it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any, TypeVar

from celery.result import AsyncResult
from django.core.management.base import CommandError

from tasklock.backends import get_backend
from tasklock.conf import conf
from tasklock.operations.clearing import force_clear
from tasklock.values.holder import Holder

from . import tasks
from .scores import ScoreStore

#: the games these acts use (the burst uses 1-3)
REBUILT_GAME, SCORED_GAME = 4, 5
ACT_GAMES = [REBUILT_GAME, SCORED_GAME]

T = TypeVar("T")


def wait_for(condition: Callable[[], T], within: float, what: str) -> T:
    """Poll ``condition`` until it is truthy; CommandError naming ``what`` after ``within`` s."""
    deadline = time.monotonic() + within
    while not (found := condition()):
        if time.monotonic() > deadline:
            raise CommandError(f"the demo waited {within:.0f} s for {what}")
        time.sleep(0.005)
    return found


def _holder(name: str) -> Holder | None:
    backend = get_backend()
    return Holder.decode(backend.get(backend.key(name)))


def dead_worker(say: Callable[[str], None], sent: list[AsyncResult]) -> float:
    """Kill the process that holds a game's lock; the seconds until the lock was free."""
    name = tasks.game_lock(REBUILT_GAME)
    result = tasks.rebuild_game.delay(REBUILT_GAME)
    sent.append(result)
    holder = wait_for(lambda: _holder(name), 30, f"rebuild_game to take {name}")
    say(
        f"rebuild_game holds {name} in worker process {holder.holder} (a {holder.timeout:g} s lease, "
        "renewed while it works).\nKilling that process with SIGKILL, as the OOM killer would ..."
    )
    os.kill(holder.pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: _holder(name) is None, 15, f"{name} to be freed")
    took = time.monotonic() - killed
    say(
        f"{name} was free again {took * 1000:.0f} ms later: the worker's main process saw its child "
        f"die and freed the lock.\nOn its lease alone it would have stayed taken {holder.timeout:g} s; "
        f"a plain TTL lock stays taken for its whole TTL ({conf.TIMEOUT} s by default here)."
    )
    return took


def stale_write(say: Callable[[str], None], store: ScoreStore, sent: list[AsyncResult]) -> dict[str, Any]:
    """A force-cleared holder's late write is refused by the store; both outcomes."""
    name = tasks.game_lock(SCORED_GAME)
    stalled = tasks.save_score.delay(SCORED_GAME, "2-1 (stale)", stall=15)
    sent.append(stalled)
    wait_for(lambda: _holder(name), 30, f"save_score to take {name}")
    say(f"save_score('2-1') holds {name} and stalls. An operator force-clears the lock ...")
    force_clear(name, by="demo", via="python")
    sent.append(fresh_result := tasks.save_score.delay(SCORED_GAME, "3-1"))
    fresh = fresh_result.get(timeout=30)
    say(
        f"save_score('3-1') took {name}, fencing token {fresh['token']}: "
        f"{'accepted' if fresh['accepted'] else 'REFUSED'}."
    )
    late = stalled.get(timeout=30)
    say(
        "The stalled save_score('2-1') wakes up, unaware that it lost the lock, and writes with its "
        f"older token {late['token']}: "
        f"{'ACCEPTED (stale data!)' if late['accepted'] else 'refused by the store'}."
    )
    score, _ = store.last(SCORED_GAME)
    say(f"The store keeps {score!r}.")
    return {"fresh": fresh, "late": late, "kept": score}
