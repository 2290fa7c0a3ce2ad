"""The demo's Celery workers: real ``celery worker`` subprocesses, prefork pool."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from celery import Celery
from django.core.management.base import CommandError

from .timeline import RUN_VARIABLE

#: seconds a worker gets to finish its tasks after SIGTERM before it is killed
STOP_GRACE = 10


@dataclass
class Worker:
    """One ``celery worker`` process, in its own session so a Ctrl-C reaches only the demo."""

    name: str
    nodename: str
    process: subprocess.Popen
    log_path: str

    def log_tail(self, lines: int = 20) -> str:
        with open(self.log_path, errors="replace") as log:
            return "".join(log.readlines()[-lines:])

    def terminate(self) -> None:
        """Ask for Celery's warm shutdown: finish the running tasks, then exit."""
        if self.process.poll() is None:
            self.process.terminate()

    def wait_or_kill(self) -> None:
        """Wait for the exit; past ``STOP_GRACE`` seconds, SIGKILL the whole process group."""
        try:
            self.process.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def start_workers(
    names: list[str], *, queue: str, redis_url: str, run_id: str, concurrency: int, log_dir: str
) -> list[Worker]:
    """Start one worker per name, consuming ``queue`` only, on the Redis at ``redis_url``."""
    env = {**os.environ, "REDIS_URL": redis_url, RUN_VARIABLE: run_id,
           "DJANGO_SETTINGS_MODULE": "demo_project.settings"}  # fmt: skip
    host = socket.gethostname()
    workers = []
    for name in names:
        nodename = f"{name}@{host}-{os.getpid()}"
        log_path = os.path.join(log_dir, f"{name}.log")
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "demo_project", "worker", "--pool=prefork",
                 f"--concurrency={concurrency}", f"--queues={queue}", f"--hostname={nodename}",
                 "--without-gossip", "--without-mingle", "--loglevel=warning"],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )  # fmt: skip
        workers.append(Worker(name, nodename, process, log_path))
    return workers


def wait_until_ready(app: Celery, workers: list[Worker], timeout: float = 45) -> None:
    """Return once every worker answers a ping; CommandError if one exits or stays silent."""
    waiting = {worker.nodename: worker for worker in workers}
    deadline = time.monotonic() + timeout
    while waiting:
        for worker in waiting.values():
            if worker.process.poll() is not None:
                raise CommandError(f"worker {worker.name} exited:\n{worker.log_tail()}")
        if time.monotonic() > deadline:
            raise CommandError(f"workers {', '.join(sorted(waiting))} did not answer within {timeout:.0f} s")
        for reply in app.control.ping(destination=list(waiting), timeout=0.5):
            for nodename in reply:
                waiting.pop(nodename, None)
