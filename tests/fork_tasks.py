"""Locked tasks on memcached, for a worker whose main process used a memcached lock before it
forked (tests/forking_worker.py)."""

import time

from tasklock import task_lock
from tests.celery_app import app
from tests.tasks import record


@app.task(bind=True)
@task_lock(key="fork:{item}", timeout=30, on_locked="wait", cache="memcached")
def locked(self, item: str, run_id: str) -> str:
    started = time.monotonic()
    time.sleep(0.005)
    record(run_id, item, started)
    return "ran"


@app.task(bind=True)
@task_lock(key="fork:{item}", timeout=60, cache="memcached")
def hold(self, item: str, run_id: str) -> str:
    """Holds its lock until it is killed; writes down its pid once it has run for a while
    (the worker's main process has seen it run by then)."""
    time.sleep(0.5)
    record(run_id, item, time.monotonic())
    time.sleep(60)
    return "finished"
