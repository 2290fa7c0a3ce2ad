"""``limit=N`` on a real prefork worker (4 processes): at most N bodies of one name at once,
and a dead holder's slot — only its own — freed by the worker's main process within seconds."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
from celery.exceptions import TaskRevokedError, TimeLimitExceeded, WorkerLostError

from tasklock import Lock
from tasklock.backends import get_backend
from tasklock.dead_holders.reaper import reap_dead_processes
from tasklock.values.processes import MACHINE
from tasklock.values.slots import Record
from tests import tasks
from tests.test_celery import intervals, max_concurrency
from tests.test_lifetime import FREED_AFTER_DEATH, died, started_pid, wait_until


def test_ten_exports_of_one_tenant_run_two_at_a_time(celery_worker):
    run_id, tenant = uuid.uuid4().hex, f"tenant-{uuid.uuid4().hex}"
    results = [tasks.export.delay(tenant, run_id) for _ in range(10)]
    assert [result.get(timeout=120) for result in results] == ["ran"] * 10
    spans = intervals(run_id)
    assert len(spans) == 10
    assert max_concurrency(spans) == 2  # never three; and both slots were used


def holder_pids(item: str) -> list[int]:
    """The pids of the live holders of ``slots:<item>``'s record."""
    backend = get_backend()
    record = Record.decode(backend.get(backend.key(f"slots:{item}")))
    return [] if record is None else sorted(slot.holder.pid for slot in record.slots)


@pytest.mark.parametrize("death", ["SIGKILL", "revoke", "time limit"])
def test_a_dead_holder_frees_only_its_own_slot(celery_worker, death):
    item = uuid.uuid4().hex
    survivor = tasks.hold_slot.delay(item)
    doomed = (tasks.hold_slot_past_time_limit if death == "time limit" else tasks.hold_slot).delay(item)
    survivor_pid, doomed_pid = started_pid(survivor), started_pid(doomed)
    wait_until(lambda: holder_pids(item) == sorted([survivor_pid, doomed_pid]), 30)
    if death == "SIGKILL":
        os.kill(doomed_pid, signal.SIGKILL)
    elif death == "revoke":
        doomed.revoke(terminate=True, signal="SIGKILL")
    # within 5 s of the death (a hard time limit kills 3 s after the start)
    within = FREED_AFTER_DEATH + (tasks.hold_slot_past_time_limit.time_limit if death == "time limit" else 0)
    took = wait_until(lambda: holder_pids(item) == [survivor_pid], within)
    print(f"{death}: the dead holder's slot was freed {took * 1000:.0f} ms after")
    raised = {"SIGKILL": WorkerLostError, "revoke": TaskRevokedError, "time limit": TimeLimitExceeded}
    with pytest.raises(raised[death]):
        doomed.get(timeout=30)
    newcomer = Lock(f"slots:{item}", timeout=5, limit=2)
    assert newcomer.acquire(), "the freed slot is free"
    assert not Lock(f"slots:{item}", timeout=5, limit=2).acquire(), "the survivor keeps its own"
    newcomer.release()
    survivor.revoke(terminate=True, signal="SIGKILL")
    with pytest.raises(TaskRevokedError):
        survivor.get(timeout=30)


#: take a slot of a limited name in a subprocess that then exits without releasing it
DIE_HOLDING_A_SLOT = """
import os, sys, django
django.setup()
from tasklock import Lock
held = Lock(sys.argv[1], timeout=60, cache=sys.argv[2], limit=3)
assert held.acquire()
os._exit(0)
"""


@pytest.mark.skipif(MACHINE is None, reason="no boot id / PID namespace here")
def test_the_start_up_reaper_frees_only_dead_holders_slots(lock_cache):
    name = f"reap-slots:{uuid.uuid4().hex}"
    alive = Lock(name, timeout=60, cache=lock_cache, limit=3)
    assert alive.acquire()
    for _ in range(2):
        subprocess.run(
            [sys.executable, "-c", textwrap.dedent(DIE_HOLDING_A_SLOT), name, lock_cache], check=True
        )
    assert not Lock(name, timeout=60, cache=lock_cache, limit=3).acquire(), "three holders: full"
    try:
        assert reap_dead_processes(lock_cache) >= 2
        assert alive.owned(), "the live holder keeps its slot"
        backend = get_backend(lock_cache)
        record = Record.decode(backend.get(backend.key(name)))
        assert record is not None and [slot.holder.pid for slot in record.slots] == [os.getpid()]
    finally:
        alive.release()


@pytest.mark.parametrize("cache", ["default", "memcached"])
def test_a_child_killed_right_after_taking_a_slot_frees_only_that_slot(cache, celery_worker, request):
    """The journal's path (the main process has not seen the request run): the dead child's
    slot is freed within seconds, the redelivered copy takes it, and this process keeps its own."""
    if cache == "memcached":
        request.getfixturevalue("memcached_server")
    item, run_id = uuid.uuid4().hex, uuid.uuid4().hex
    mine = Lock(f"killed:{item}", timeout=60, cache=cache, limit=2)
    assert mine.acquire()
    result = tasks.killed_at_start_limited[cache].delay(item, run_id)
    died_at, pid = died(run_id)
    backend = get_backend(cache)

    def dead_slot_freed() -> bool:
        record = Record.decode(backend.get(backend.key(f"killed:{item}")))
        return record is None or pid not in [slot.holder.pid for slot in record.slots]

    wait_until(dead_slot_freed, max(FREED_AFTER_DEATH - (time.monotonic() - died_at), 0.01))
    print(f"the dead child's slot was freed {time.monotonic() - died_at:.2f} s after its death")
    assert result.get(timeout=90) == "ran", "the redelivered copy ran its body"
    spans = intervals(run_id)
    assert len(spans) == 1 and spans[0][3] != pid, "only the redelivered copy ran a body"
    assert mine.owned() and mine.release()
