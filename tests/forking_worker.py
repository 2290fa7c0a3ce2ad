"""The test app for a worker whose main process used a memcached lock in its main thread
before the pool forked its children (a "run once at start" step in ``worker_init``)."""

from celery.signals import worker_init

import tests.fork_tasks  # noqa: F401 - the tasks this worker runs
from tests.celery_app import app

__all__ = ["app"]


@worker_init.connect
def run_once_at_start(**kwargs) -> None:
    from tasklock import Lock

    with Lock("fork:worker-init", timeout=10, cache="memcached"):
        pass
