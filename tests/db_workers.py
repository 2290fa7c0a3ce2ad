"""Real ``django-tasks-db`` workers (``manage.py db_worker``) as subprocesses, for issue 21's
tests: started, waited for (their log says they poll), stopped."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from tests.waiting import wait_until

#: how often an idle worker looks for a task (s): the tests wait for retries of 0.2 s
INTERVAL = 0.02


@dataclass
class DbWorker:
    """One ``db_worker`` process and its log."""

    process: subprocess.Popen
    log_path: str

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        with open(self.log_path) as written:
            return written.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_db_worker(queue: str = "default") -> DbWorker:
    """A ``db_worker`` on ``queue`` of the "default" task backend, once its loop runs."""
    log_path = os.path.join(tempfile.mkdtemp(prefix="tasklock-db-worker-"), "worker.log")
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "django", "db_worker", f"--queue-name={queue}", f"--interval={INTERVAL}",
             "--no-startup-delay", "--no-reload", "--verbosity=1"],
            stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(),
        )  # fmt: skip
    worker = DbWorker(process, log_path)
    try:  # a worker that dies on startup fails the wait at once, not after the deadline
        started = "Starting worker"
        wait_until(lambda: started in worker.log() or process.poll() is not None, "db_worker starts", 120)
        assert process.poll() is None, f"db_worker exited with {process.returncode}:\n{worker.log()}"
    except Exception:
        worker.stop()
        print(worker.log(), file=sys.stderr)
        raise
    return worker
