"""Tasks run by a real prefork worker in the tests; each records when its body ran."""

import json
import os
import signal
import time

import redis
from django.conf import settings
from django.dispatch import receiver

from tasklock import task_lock
from tasklock.signals import lock_lost
from tests.celery_app import app


def record(run_id: str, key: object, started: float) -> None:
    """Append [key, start, end, pid] to the run's list (monotonic clock, system-wide on Linux)."""
    client = redis.Redis.from_url(settings.CELERY_RESULT_BACKEND)
    client.rpush(f"intervals:{run_id}", json.dumps([key, started, time.monotonic(), os.getpid()]))


@app.task
def ping() -> str:
    return "pong"


@app.task(bind=True, max_retries=200)
@task_lock(key="game_id", timeout=30, on_locked="retry", countdown=0.2)
def update_game(self, game_id: int, run_id: str, hold: float = 0.2) -> str:
    started = time.monotonic()
    time.sleep(hold)
    record(run_id, game_id, started)
    return "ran"


@app.task(max_retries=200)
@task_lock(key="game_id", timeout=30, countdown=0.2)
def update_game_unbound(game_id: int, run_id: str, hold: float = 0.2) -> str:
    started = time.monotonic()
    time.sleep(hold)
    record(run_id, game_id, started)
    return "ran"


@app.task
@task_lock(key="game_id", timeout=30, on_locked="skip")
def update_game_or_skip(game_id: int) -> str:
    return "ran"


@app.task(bind=True, max_retries=2)
@task_lock(key="game_id", timeout=30, on_locked="retry", countdown=0.05)
def update_game_few_retries(self, game_id: int) -> str:
    return "ran"


@app.task(bind=True)
@task_lock(key="item", timeout=30)
def report_holder(self, item: int) -> str | None:
    """The stored holder metadata of this task's own lock, as the cache has it."""
    from tasklock.backends import get_backend

    backend = get_backend()
    return backend.get(backend.key(f"{self.name}:{item}"))


@app.task(bind=True, time_limit=1)
@task_lock(key="item", timeout=3, on_locked="skip")
def overrun(self, item: int) -> str:
    """Killed by its hard time limit while holding its lock."""
    time.sleep(10)
    return "finished"


# Issue 9, item 2: Celery wraps run() for autoretry_for; the lock must still find its task.
@app.task(bind=True, autoretry_for=(ConnectionError,), max_retries=200)
@task_lock(key="game_id", timeout=30, countdown=0.1)
def update_game_autoretry(self, game_id: int, run_id: str, hold: float = 0) -> str:
    started = time.monotonic()
    time.sleep(hold)
    record(run_id, game_id, started)
    return "ran"


@app.task(autoretry_for=(ConnectionError,), max_retries=200)
@task_lock(key="game_id", timeout=30, on_locked="retry", countdown=0.1)
def update_game_autoretry_unbound(game_id: int, run_id: str, hold: float = 0) -> str:
    started = time.monotonic()
    time.sleep(hold)
    record(run_id, game_id, started)
    return "ran"


@app.task(bind=True, autoretry_for=(ConnectionError,), max_retries=200)
@task_lock(timeout=30, countdown=0.1)
def update_whole_call_autoretry(self, item: int) -> str:
    """bind=True and key=None: the name is every argument but self."""
    return "ran"


# Issue 9, item 6: valid tasks that a source-reading check refused at import.
def _update_plain(game_id: int) -> str:
    return "ran"


update_game_wrapped = app.task(name="tests.tasks.update_game_wrapped", max_retries=200)(
    task_lock("game_id", timeout=30, on_locked="retry", countdown=0.1)(_update_plain)
)

locked_task = app.task(bind=True, max_retries=200)


@locked_task
@task_lock("game_id", timeout=30, on_locked="retry", countdown=0.1)
def update_game_aliased(self, game_id: int) -> str:
    return "ran"


# Issue 9, item 4: eager and direct calls cannot be retried later.
@app.task(bind=True, max_retries=None)
@task_lock(key="game_id", timeout=30, on_locked="retry", countdown=0.1)
def update_game_forever(self, game_id: int) -> str:
    return "ran"


@app.task(bind=True, track_started=True)
@task_lock(key="hold:{item}", timeout=60)
def hold(self, item: str, seconds: float = 60) -> str:
    """Holds its lock (a 60 s lease, renewed) until it is killed; its pid is in STARTED's meta."""
    time.sleep(seconds)
    return "finished"


@app.task(bind=True, track_started=True, time_limit=3)
@task_lock(key="hold:{item}", timeout=60)
def hold_past_time_limit(self, item: str) -> str:
    """Ignores SIGTERM, so only the pool's SIGKILL after the hard time limit ends it: its
    finally never runs."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(30)
    return "finished"


@app.task(bind=True, track_started=True)
@task_lock(key="hold:{item}", timeout=60, on_locked="wait", wait=60)
def wait_for(self, item: str) -> str:
    """Blocks on the lock ``hold`` holds (its body runs only once it has it)."""
    return "ran"


@app.task(bind=True, max_retries=200)
@task_lock(key="game_id", timeout=0.8, on_locked="retry", countdown=0.1)
def long_update(self, game_id: int, run_id: str, hold: float) -> str:
    """Runs for many leases of its renewing lock."""
    started = time.monotonic()
    time.sleep(hold)
    record(run_id, game_id, started)
    return "ran"


@app.task(bind=True)
@task_lock(key="item", timeout=10)
def fencing_token(self, item: int) -> int | None:
    """The fencing token of the lock this body holds."""
    from tasklock import held_lock

    return held_lock().fencing_token


def _killed_at_start(cache: str, limit: int = 1):
    """Issue 17, item 6: an ``acks_late`` + ``reject_on_worker_lost`` task whose first delivery
    SIGKILLs its own child right after taking its lock (before the worker's main process can
    have seen the request run); the redelivered copy waits for the lock and runs its body.
    With ``limit``, the lock is one slot of ``killed:{item}`` (issue 19)."""

    @app.task(
        name=f"tests.tasks.killed_at_start_{cache}" + (f"_limit_{limit}" if limit > 1 else ""),
        acks_late=True,
        reject_on_worker_lost=True,
        time_limit=300,
    )
    @task_lock(key="killed:{item}", timeout=60, cache=cache, on_locked="wait", wait=30, limit=limit)
    def killed_at_start(item: str, run_id: str) -> str:
        started = time.monotonic()
        client = redis.Redis.from_url(settings.CELERY_RESULT_BACKEND)
        if client.set(f"killed:{item}", os.getpid(), nx=True, ex=600):  # the first delivery
            client.rpush(f"died:{run_id}", json.dumps([time.monotonic(), os.getpid()]))
            os.kill(os.getpid(), signal.SIGKILL)
        record(run_id, item, started)
        return "ran"

    return killed_at_start


killed_at_start = {cache: _killed_at_start(cache) for cache in ("default", "memcached")}
killed_at_start_limited = {cache: _killed_at_start(cache, limit=2) for cache in ("default", "memcached")}


@receiver(lock_lost)
def _doomed_receiver_raises(sender, lock, error, **kwargs) -> None:
    """A lock_lost receiver with a bug, for the locks named ``doomed:…`` only."""
    if lock.name.startswith("doomed:"):
        raise RuntimeError("a lock_lost receiver with a bug")


@app.task(bind=True)
@task_lock(key="renewed:{item}", timeout=2, on_locked="wait", wait=60)
def renewed_body(self, item: str, run_id: str, seconds: float, doomed: str | None = None) -> bool:
    """Runs ``seconds`` (many 2 s leases of its renewing lock); with ``doomed``, also holds that
    renewing lock, which the test clears so that its loss reaches the raising receiver. Returns
    whether its own lock was lost."""
    from tasklock import Lock, held_lock

    started = time.monotonic()
    side = Lock(doomed, timeout=2, renew=True) if doomed else None
    if side is not None:
        side.acquire()
    time.sleep(seconds)
    record(run_id, item, started)
    if side is not None:
        side.release_quietly()
    return held_lock().lost


@app.task(bind=True, max_retries=500)
@task_lock(key="export:{tenant}", timeout=30, limit=2, on_locked="retry", countdown=0.1)
def export(self, tenant: str, run_id: str, hold: float = 0.3) -> str:
    """Issue 19: at most two exports per tenant at once."""
    started = time.monotonic()
    time.sleep(hold)
    record(run_id, tenant, started)
    return "ran"


@app.task(bind=True, track_started=True)
@task_lock(key="slots:{item}", timeout=60, limit=2)
def hold_slot(self, item: str, seconds: float = 60) -> str:
    """Holds one of two slots (a 60 s lease, renewed) until it is killed or revoked."""
    time.sleep(seconds)
    return "finished"


@app.task(bind=True, track_started=True, time_limit=3)
@task_lock(key="slots:{item}", timeout=60, limit=2)
def hold_slot_past_time_limit(self, item: str) -> str:
    """One of two slots; ignores SIGTERM, so the pool's SIGKILL after the hard time limit ends it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(30)
    return "finished"
