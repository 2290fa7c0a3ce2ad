"""``-P threads`` and ``-P solo`` workers run task bodies in their main process: neither the
child watcher nor a start-up reaper on this machine may free a lock held there (DESIGN:
"Process lifecycle")."""

import os
import signal
import tempfile
import uuid

import pytest

from tasklock import Lock
from tests import tasks
from tests.test_lifetime import _worker, lock_of, started_pid, wait_until
from tests.test_reaper import held_by_a_dead_process

#: the caches the tests' locked tasks use, in the order a start-up reaper goes through them
HOLDER_CACHE, LAST_CACHE = "default", "memcached"


def stop(worker) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGKILL)  # a warm shutdown would wait for the holder
    worker.wait(30)


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_a_holder_in_the_main_process_keeps_its_lock(pool, redis_server, memcached_server):
    log_path = os.path.join(tempfile.mkdtemp(prefix="tasklock-worker-"), "worker.log")
    queue = f"tasklock-{pool}-{uuid.uuid4().hex[:8]}"
    item, run_id = uuid.uuid4().hex, uuid.uuid4().hex
    worker = _worker(queue, log_path, pool, concurrency=3)
    later = None
    probe = lock_of(item)
    try:
        holder = tasks.hold.apply_async((item, 45), queue=queue)
        assert started_pid(holder, prefork=False) == worker.pid, "the body runs in the worker's main process"
        wait_until(probe.locked, 30)  # STARTED comes just before the body takes its lock
        value = probe._backend.get(probe._key)
        if pool == "threads":  # locked bodies start and end beside the holder
            others = [tasks.update_game.apply_async((n, run_id, 0.05), queue=queue) for n in range(6)]
            assert [other.get(timeout=60) for other in others] == ["ran"] * 6
        canary = f"canary:{uuid.uuid4().hex}"
        held_by_a_dead_process(canary, LAST_CACHE)
        later = _worker(f"{queue}-later", log_path, pool)  # its start-up reaper runs at once
        # the reaper goes through the caches in order: once it freed the canary in the last one,
        # it has been through the holder's
        wait_until(lambda: not Lock(canary, cache=LAST_CACHE).locked(), 60)
        assert probe._backend.get(probe._key) == value, "the live holder kept its lock"
        assert holder.state == "STARTED"
    finally:
        for running in (worker, later):
            if running is not None:
                stop(running)
        probe._backend.clear(probe._key)
