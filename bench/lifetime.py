"""Lock lifetime figures: how soon a dead holder's lock is free, per cause, on a real prefork
worker (Redis broker); and what the renewer costs for 1,000 renewing locks in one process.

``python -m bench.lifetime [--runs N]``. This module is also the worker's Celery app
(``celery -A bench.lifetime worker``).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable

from celery import Celery

from tasklock import Lock, task_lock

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

app = Celery("tasklock_bench_lifetime")
app.config_from_object("django.conf:settings", namespace="CELERY")

QUEUE = "tasklock-bench-lifetime"
LEASE = 60


@app.task(name="bench.lifetime.hold")  # named: `python -m` runs this module as __main__
@task_lock(key="hold:{item}", timeout=LEASE)
def hold(item: str) -> None:
    time.sleep(60)


@app.task(name="bench.lifetime.hold_past_time_limit", time_limit=1)
@task_lock(key="hold:{item}", timeout=LEASE)
def hold_past_time_limit(item: str) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only the pool's SIGKILL ends it
    time.sleep(60)


def _wait(condition: Callable[[], object], within: float = 60) -> float:
    """Poll every millisecond; the monotonic time the condition held."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("benchmark waited too long")
        time.sleep(0.001)
    return time.monotonic()


def _holder(item: str):
    from tasklock.backends import get_backend
    from tasklock.values.holder import Holder

    backend = get_backend()
    return Holder.decode(backend.get(backend.key(f"hold:{item}")))


def _start_worker(log: str, concurrency: int = 2) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bench.lifetime", "worker", "--pool=prefork",
         f"--concurrency={concurrency}", f"--queues={QUEUE}", "--without-gossip", "--without-mingle",
         "--without-heartbeat", "--loglevel=error", f"--hostname=lifetime-{uuid.uuid4().hex[:6]}@%h"],
        stdout=open(log, "a"), stderr=subprocess.STDOUT, env=os.environ.copy(), start_new_session=True,  # noqa: SIM115
    )  # fmt: skip
    item = uuid.uuid4().hex  # ready once it runs a task
    hold.apply_async((item,), queue=QUEUE)
    _wait(lambda: _holder(item), 60)
    os.kill(_holder(item).pid, signal.SIGKILL)
    _wait(lambda: _holder(item) is None)
    return process


def _stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def sigkill() -> float:
    item = uuid.uuid4().hex
    hold.apply_async((item,), queue=QUEUE)
    _wait(lambda: _holder(item))
    os.kill(_holder(item).pid, signal.SIGKILL)
    killed = time.monotonic()
    return _wait(lambda: _holder(item) is None) - killed


def time_limit() -> float:
    from tasklock.values.processes import is_gone

    item = uuid.uuid4().hex
    hold_past_time_limit.apply_async((item,), queue=QUEUE)
    _wait(lambda: _holder(item))
    pid = _holder(item).pid
    died = _wait(lambda: is_gone(pid))
    return _wait(lambda: _holder(item) is None) - died


def revoke() -> float:
    item = uuid.uuid4().hex
    result = hold.apply_async((item,), queue=QUEUE)
    _wait(lambda: _holder(item))
    revoked = time.monotonic()
    app.control.revoke(result.id, terminate=True)
    return _wait(lambda: _holder(item) is None) - revoked


def restart(log: str) -> float:
    """A worker SIGKILLed whole while its child holds a lock; the seconds from the new
    worker's start to the lock being free."""
    worker = _start_worker(log, concurrency=1)
    item = uuid.uuid4().hex
    hold.apply_async((item,), queue=QUEUE)
    _wait(lambda: _holder(item))
    _stop(worker)
    started = time.monotonic()
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bench.lifetime", "worker", "--pool=prefork",
         "--concurrency=1", f"--queues={QUEUE}-idle", "--without-gossip", "--without-mingle",
         "--without-heartbeat", "--loglevel=error"],
        stdout=open(log, "a"), stderr=subprocess.STDOUT, env=os.environ.copy(), start_new_session=True,  # noqa: SIM115
    )  # fmt: skip
    try:
        return _wait(lambda: _holder(item) is None) - started
    finally:
        _stop(worker)


def renewal_load(count: int = 1000, lease: float = 3.0, seconds: float = 10.0) -> dict[str, float]:
    """``count`` renewing locks held for ``seconds``: renewals per second, the CPU share of the
    renewer's threads (its scheduler and workers)."""
    renewed = [0]

    class Counted(Lock):
        def _renewal(self, timeout: float) -> tuple[bool, str, float] | None:
            renewed[0] += 1
            return super()._renewal(timeout)

    locks = [Counted(f"bench:renew:{i}:{uuid.uuid4().hex}", timeout=lease, renew=True) for i in range(count)]
    for held in locks:
        held.acquire()
    time.sleep(lease / 2)  # the first renewals are under way: the workers exist
    threads = [t for t in threading.enumerate() if t.name in ("tasklock-renewer", "tasklock-renewal")]
    clocks = [time.pthread_getcpuclockid(thread.ident) for thread in threads]
    cpu, renewed[0], started = sum(map(time.clock_gettime, clocks)), 0, time.monotonic()
    time.sleep(seconds)
    cpu = sum(map(time.clock_gettime, clocks)) - cpu
    wall, done = time.monotonic() - started, renewed[0]
    lost = sum(held.lost for held in locks)
    for held in locks:
        held.release()
    share = 100 * cpu / wall
    return {"renewals/s": done / wall, "renewer CPU %": share, "renewer threads": len(threads), "lost": lost}


def _summary(label: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    return (
        f"{label:<28} runs {len(ms):>3}  median {statistics.median(ms):8.1f} ms  "
        f"worst {ms[-1]:8.1f} ms   (the lease: {LEASE * 1000:.0f} ms)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.lifetime", description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--restarts", type=int, default=3, help="runs of the (slow) whole-worker case")
    options = parser.parse_args(argv)
    from .environment import servers

    with servers():
        log = os.path.join(tempfile.mkdtemp(prefix="tasklock-bench-lifetime-"), "worker.log")
        print(f"worker log: {log}", flush=True)
        worker = _start_worker(log)
        try:
            rows = [
                _summary("SIGKILL of the child", [sigkill() for _ in range(options.runs)]),
                _summary("hard time limit", [time_limit() for _ in range(options.runs)]),
                _summary("revoke(terminate=True)", [revoke() for _ in range(options.runs)]),
            ]
        finally:
            _stop(worker)
        if options.restarts:
            restarts = [restart(log) for _ in range(options.restarts)]
            rows.append(_summary("worker killed and restarted", restarts))
        print("\n== time from a holder's death to its lock being free", *rows, sep="\n", flush=True)
        load = renewal_load()
        print("\n== renewal load: 1,000 renewing locks (3 s lease) in one process, 10 s")
        print("  ".join(f"{key}: {value:.1f}" for key, value in load.items()), flush=True)
        renewers = sum(thread.name == "tasklock-renewer" for thread in threading.enumerate())
        workers = sum(thread.name == "tasklock-renewal" for thread in threading.enumerate())
        print(f"threads named tasklock-renewer: {renewers}, tasklock-renewal: {workers}")


if __name__ == "__main__":
    main()
