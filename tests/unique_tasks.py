"""Enqueue-time unique tasks (issue 11), run by the tests' real prefork worker."""

import json
import time
from typing import Any

import redis
from django.conf import settings

from tasklock import task_lock
from tasklock.celery import UniqueTask
from tests.celery_app import app
from tests.tasks import record

#: a queue no worker consumes (tests.settings routes the idle_* tasks there): its messages stay
#: on the broker, where a test counts them
IDLE_QUEUE = "tasklock-unique-idle"


def note(run_id: str, what: str, task_id: str) -> None:
    """Append [what, task id, time] to the run's list of events."""
    client = redis.Redis.from_url(settings.CELERY_RESULT_BACKEND)
    client.rpush(f"events:{run_id}", json.dumps([what, task_id, time.monotonic()]))


@app.task(base=UniqueTask)
@task_lock(key="item", timeout=60, unique="until_executed")
def idle_rebuild(item: str) -> str:
    return "ran"


@app.task(base=UniqueTask, bind=True)
@task_lock(key="item", timeout=60, unique="until_executed", on_duplicate="raise")
def idle_rebuild_or_raise(self, item: str) -> str:
    return "ran"


@app.task(base=UniqueTask, bind=True)
@task_lock(key="item", timeout=30, unique="until_executed")
def rebuild(self, item: str, run_id: str = "", hold: float = 0) -> str:
    note(run_id, "start", self.request.id)
    time.sleep(hold)
    return f"ran {item}"


@app.task(base=UniqueTask, bind=True, max_retries=3)
@task_lock(key="item", timeout=30, unique="until_executed")
def retry_once(self, item: str, run_id: str, countdown: float = 2) -> str:
    """Asks for one retry with ``countdown`` on its first attempt."""
    note(run_id, f"attempt {self.request.retries}", self.request.id)
    if self.request.retries == 0:
        raise self.retry(countdown=countdown)
    return "done"


@app.task(base=UniqueTask, bind=True)
@task_lock(key="item", timeout=30, unique="until_executing")
def rebuild_once_started(self, item: str, run_id: str, hold: float) -> str:
    note(run_id, "start", self.request.id)
    time.sleep(hold)
    return "ran"


@app.task(base=UniqueTask, bind=True, max_retries=None)
@task_lock(key="item", timeout=30, unique="until_and_while_executing", on_locked="retry", countdown=0.05)
def rebuild_both(self, item: str, run_id: str, hold: float) -> str:
    started = time.monotonic()
    time.sleep(hold)
    record(run_id, self.request.id, started)
    return "ran"


@app.task
def joined(results: list[str]) -> str:
    return "|".join(results)


@app.task(
    base=UniqueTask, bind=True, max_retries=3, autoretry_for=(ConnectionError,), retry_kwargs={"countdown": 2}
)
@task_lock(key="item", timeout=30, unique="until_executed")
def autoretry_once(self, item: str, run_id: str, countdown: float = 2) -> str:
    """Fails with an autoretried error on its first attempt (Celery retries after the body)."""
    note(run_id, f"attempt {self.request.retries}", self.request.id)
    if self.request.retries == 0:
        raise ConnectionError("first attempt")
    return "done"


def _refused(policy: str, cache: str) -> Any:
    """An ``until_and_while_executing`` task on ``cache`` whose copy that finds the run lock
    held does not run: ``skip``, ``raise``, or ``retry`` with no retry left."""

    @app.task(base=UniqueTask, bind=True, name=f"tests.unique_tasks.refused_{policy}_{cache}", max_retries=0)
    @task_lock(key="item", timeout=30, unique="until_and_while_executing", on_locked=policy, cache=cache)
    def refused(self, item: str, run_id: str) -> str:
        note(run_id, "start", self.request.id)
        return "ran"

    return refused


#: by (on_locked, cache)
REFUSED = {
    (policy, cache): _refused(policy, cache)
    for policy in ("skip", "raise", "retry")
    for cache in ("default", "database")
}


def gate_key(run_id: str) -> str:
    """The result-backend Redis key whose presence opens the gate of run ``run_id``."""
    return f"gate:{run_id}"


def _gated(cache: str, ignore_result: bool = False) -> Any:
    """An ``until_executed`` task on ``cache`` that, with ``gated``, runs until the test opens
    the gate: a duplicate published meanwhile surely finds it queued or running."""
    name = f"tests.unique_tasks.gated_{cache}{'_unstored' if ignore_result else ''}"

    @app.task(base=UniqueTask, bind=True, name=name, ignore_result=ignore_result)
    @task_lock(key="item", timeout=30, unique="until_executed", cache=cache)
    def gated(self, item: str, run_id: str, gated: bool = False) -> str:
        note(run_id, "start", self.request.id)
        client = redis.Redis.from_url(settings.CELERY_RESULT_BACKEND)
        while gated and not client.exists(gate_key(run_id)):
            time.sleep(0.01)
        return f"ran {item}"

    return gated


#: by cache
GATED = {cache: _gated(cache) for cache in ("default", "memcached")}
#: its result is never stored
GATED_UNSTORED = _gated("default", ignore_result=True)


@app.task
def then(previous: str) -> str:
    """A chain's next step, or a link callback: it gets the result before it."""
    return f"then {previous}"
