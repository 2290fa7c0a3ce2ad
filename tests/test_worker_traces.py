"""A blocking acquire in a Celery task shows in the task's trace (issue 22): a real prefork
worker whose children configure an OpenTelemetry SDK after start (tests/traced_worker.py)
runs a task that waits for a lock this test holds; its ``tasklock.acquire`` span is a child of
the task's run span and lasts the wait."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid

import pytest

from tasklock import Lock
from tests import traced_worker
from tests.test_admin_activity import line_length
from tests.test_fork_worker import stop_worker
from tests.waiting import wait_until

pytestmark = pytest.mark.usefixtures("redis_server", "django_db_setup")

#: seconds a task may take on a loaded machine; only a hang waits this long
ROUND = 60
#: the span Celery's instrumentation makes of the task's run
RUN = f"run/{traced_worker.wait_for_lock.name}"


def read_spans(path: str) -> dict[str, dict]:
    with open(path) as written:
        return {span["name"]: span for span in map(json.loads, written)}


def test_the_wait_shows_in_the_celery_task_trace(tmp_path):
    queue = f"tasklock-traced-{uuid.uuid4().hex[:8]}"
    spans_path, log_path = str(tmp_path / "spans.jsonl"), os.path.join(tempfile.mkdtemp(), "worker.log")
    with open(log_path, "a") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.traced_worker", "worker", "--pool=prefork",
             "--concurrency=1", f"--queues={queue}", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "--loglevel=warning", f"--hostname={queue}@%h"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "TASKLOCK_TEST_SPANS": spans_path},
        )  # fmt: skip
    item = uuid.uuid4().hex
    held = Lock(f"traced:{item}", timeout=60)
    assert held.acquire()
    try:
        result = traced_worker.wait_for_lock.apply_async((item,), queue=queue)
        wait_until(lambda: line_length(held.name) == 1, "the task waits in the lock's line", ROUND)
        assert held.release()
        assert result.get(timeout=ROUND) == "ran"
        names = {"tasklock.acquire", RUN}
        wait_until(lambda: names <= set(read_spans(spans_path)), "both spans are written", ROUND)
    except BaseException:
        with open(log_path) as written:
            print(written.read(), file=sys.stderr)
        raise
    finally:
        held.release()
        stop_worker(worker)
    spans = read_spans(spans_path)
    acquire, run = spans["tasklock.acquire"], spans[RUN]
    assert acquire["context"]["trace_id"] == run["context"]["trace_id"]
    assert acquire["parent_id"] == run["context"]["span_id"]
    assert acquire["attributes"] == {"lock": "traced", "cache": "default", "outcome": "acquired"}
    assert run["start_time"] <= acquire["start_time"] < acquire["end_time"] <= run["end_time"]
