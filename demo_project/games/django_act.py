"""``manage.py demo --django-tasks``: the burst of ``demo``, as Django tasks run by two real
``django-tasks-db`` ``db_worker`` processes (on the demo's database) instead of Celery."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from django.core.management.base import CommandError

from tasklock import SKIPPED
from tasklock.integrations.django_tasks import RETRIED

from . import jobs
from .acts import wait_for
from .report import GameReport
from .tasks import game_lock
from .timeline import RUN_VARIABLE, Timeline, most_at_once

WORKERS = 2
#: the longest the tasks may take before the demo gives up on them
TASKS_DEADLINE = 40


@dataclass
class Sent:
    """One task sent for a game, followed through its retries (each a new task result)."""

    lock_name: str
    result: Any
    retried: int = 0

    def done(self) -> bool:
        """Finished, for good: a retried attempt is followed to the result it enqueued."""
        self.result.refresh()
        if not self.result.is_finished:
            return False
        value = self.result.return_value if self.result.status == "SUCCESSFUL" else None
        if isinstance(value, dict) and value.get("tasklock") == RETRIED:
            self.result = self.result.task.get_result(value["result_id"])
            self.retried += 1
            return self.done()
        return True


def start_db_workers(stack: ExitStack, redis_url: str, run_id: str) -> list[subprocess.Popen]:
    """``WORKERS`` ``db_worker`` processes on the demo's queue, stopped when ``stack`` closes."""
    env = {**os.environ, "REDIS_URL": redis_url, RUN_VARIABLE: run_id,
           "DJANGO_SETTINGS_MODULE": "demo_project.settings"}  # fmt: skip
    log_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="tasklock-demo-db-workers-"))
    processes = []
    for number in range(WORKERS):
        log_path = os.path.join(log_dir, f"db_worker-{number}.log")
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "django", "db_worker", f"--queue-name={jobs.QUEUE}", "--interval=0.05",
                 "--no-startup-delay", "--no-reload", "--verbosity=1"],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )  # fmt: skip
        stack.callback(_stop, process)
        processes.append(process)
        wait_for(
            lambda path=log_path, process=process: _started(path, process), 45, f"db_worker {number} to start"
        )
    return processes


def _started(log_path: str, process: subprocess.Popen) -> bool:
    with open(log_path, errors="replace") as log:
        written = log.read()
    if process.poll() is not None:
        raise CommandError(f"db_worker exited with {process.returncode}:\n{written}")
    return "Starting worker" in written


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM: db_worker finishes its task, then exits; SIGKILL after 10 s."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run(say: Callable[[str], None], redis_url: str, games: tuple[int, ...]) -> list[GameReport]:
    """Send the burst as Django tasks to two db_workers; one report per game."""
    from django_tasks_db.models import DBTaskResult

    timeline = Timeline(redis_url, os.urandom(4).hex())
    with ExitStack() as stack:
        stack.callback(timeline.delete)
        stack.callback(lambda: DBTaskResult.objects.filter(queue_name=jobs.QUEUE).delete())
        say(f"Starting {WORKERS} db_worker processes (django-tasks-db, queue {jobs.QUEUE!r}) ...")
        start_db_workers(stack, redis_url, timeline.run_id)
        sent = [Sent(game_lock(game), job.enqueue(game)) for game in games for job in jobs.BURST]
        say(f"Enqueued {len(sent)} Django tasks at once; waiting for them (retries included) ...")
        started = time.monotonic()
        waiting = list(sent)
        while waiting := [each for each in waiting if not each.done()]:
            if time.monotonic() - started > TASKS_DEADLINE:
                raise CommandError(f"{len(waiting)} Django tasks did not finish within {TASKS_DEADLINE} s")
            time.sleep(0.05)
        say(f"All {len(sent)} finished in {time.monotonic() - started:.1f} s. Stopping the db_workers ...")
        return _reports(sent, timeline.spans())


def _reports(sent: list[Sent], spans: dict[str, list[tuple[float, float]]]) -> list[GameReport]:
    counts: dict[str, Counter[str]] = {}
    for each in sent:
        counted = counts.setdefault(each.lock_name, Counter())
        counted["sent"] += 1
        counted["retried"] += each.retried
        counted["failed"] += each.result.status == "FAILED"
        counted["skipped"] += each.result.status == "SUCCESSFUL" and each.result.return_value == SKIPPED
    return [
        GameReport(name, c["sent"], len(spans.get(name, [])), c["skipped"], c["retried"],
                   most_at_once(spans.get(name, [])), c["failed"], 0)
        for name, c in counts.items()
    ]  # fmt: skip
