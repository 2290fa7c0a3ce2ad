"""A prefork worker on memcached whose main process used a memcached lock in its main thread
before forking (issue 17, item 1): its children must not share that client's socket. They
used to hang on their first lock or read each other's replies (117 of 120 tasks unfinished).
A child SIGKILLed while holding a lock is freed by the main process, which then forks its
replacement: the next locked tasks run, never two at once (``max_tasks_per_child=1`` too)."""

import os
import signal
import subprocess
import sys
import tempfile
import uuid

import pytest
from celery.exceptions import WorkerLostError

from tasklock import Lock
from tests import fork_tasks, tasks
from tests.test_celery import intervals, overlapping_pairs
from tests.waiting import wait_until

pytestmark = pytest.mark.usefixtures("redis_server", "memcached_server", "django_db_setup")

TASKS = 30
#: seconds for a round of tasks; a hung child never finishes them
ROUND = 60


def start_worker(queue: str, log_path: str, max_tasks_per_child: int | None) -> subprocess.Popen:
    recycle = [f"--max-tasks-per-child={max_tasks_per_child}"] if max_tasks_per_child else []
    with open(log_path, "a") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.forking_worker", "worker", "--pool=prefork",
             "--concurrency=3", f"--queues={queue}", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "--loglevel=warning", f"--hostname={queue}@%h", *recycle],
            stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(), start_new_session=True,
        )  # fmt: skip


def stop_worker(worker: subprocess.Popen) -> None:
    """Stop a worker started in a session of its own, with its pool: warm, then cold."""
    os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()


def run_locked_tasks(queue: str, item: str) -> None:
    """``TASKS`` tasks on one lock: every one runs, never two at once."""
    run_id = uuid.uuid4().hex
    results = [fork_tasks.locked.apply_async((item, run_id), queue=queue) for _ in range(TASKS)]
    assert [result.get(timeout=ROUND) for result in results] == ["ran"] * TASKS
    spans = intervals(run_id)
    assert len(spans) == TASKS
    assert overlapping_pairs(spans) == 0


@pytest.mark.parametrize("max_tasks_per_child", [None, 1])
def test_a_worker_whose_main_process_used_a_memcached_lock(max_tasks_per_child):
    queue = f"tasklock-fork-{uuid.uuid4().hex[:8]}"
    log_path = os.path.join(tempfile.mkdtemp(prefix="tasklock-worker-"), "worker.log")
    item = uuid.uuid4().hex
    worker = start_worker(queue, log_path, max_tasks_per_child)
    try:
        assert tasks.ping.apply_async(queue=queue).get(timeout=ROUND) == "pong"
        run_locked_tasks(queue, item)

        holding = uuid.uuid4().hex
        held = fork_tasks.hold.apply_async((item, holding), queue=queue)
        wait_until(lambda: intervals(holding), "the body holds its lock", ROUND)
        probe = Lock(f"fork:{item}", cache="memcached")
        assert probe.locked()
        os.kill(intervals(holding)[0][3], signal.SIGKILL)
        wait_until(lambda: not probe.locked(), "the main process frees the dead child's lock", 10)
        with pytest.raises(WorkerLostError):
            held.get(timeout=30)

        run_locked_tasks(queue, item)  # the replacement child among the runners
    except BaseException:
        with open(log_path) as log:
            print(log.read(), file=sys.stderr)
        raise
    finally:
        stop_worker(worker)
