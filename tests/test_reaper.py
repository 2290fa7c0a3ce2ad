"""The worker-start reaper: it frees the locks of this machine's dead processes, and only
those; a cache it cannot reach is logged and never stops the worker."""

import logging
import subprocess
import sys
import textwrap
import uuid

import pytest

from tasklock import Lock
from tasklock.backends import get_backend
from tasklock.holder import Holder
from tasklock.processes import HOST, MACHINE
from tasklock.reaper import on_worker_ready, reap_dead_processes
from tests.test_renewal import wait_until

pytestmark = pytest.mark.skipif(MACHINE is None, reason="no boot id / PID namespace here")

#: take a lock in a subprocess that then exits without releasing it (as a SIGKILL would)
DIE_HOLDING = """
import os, sys, django
django.setup()
from tasklock import Lock
held = Lock(sys.argv[1], timeout=60, cache=sys.argv[2])
assert held.acquire()
os._exit(0)
"""


def held_by_a_dead_process(name: str, cache: str) -> None:
    subprocess.run([sys.executable, "-c", textwrap.dedent(DIE_HOLDING), name, cache], check=True)


def plant(name: str, cache: str, **fields) -> str:
    """Store a holder record with ``fields`` changed, as another process would have."""
    backend = get_backend(cache)
    holder = Holder.here(uuid.uuid4().hex, name, 0, 60)
    record = {field: getattr(holder, field) for field in Holder.__dataclass_fields__}
    record.update(fields)
    value = Holder(**record).encode()
    assert backend.add(backend.key(name), value, 60)
    return value


def test_frees_a_dead_process_lock_and_leaves_the_living(lock_cache):
    dead, alive = f"reap:{uuid.uuid4().hex}", Lock(f"reap:{uuid.uuid4().hex}", timeout=60, cache=lock_cache)
    held_by_a_dead_process(dead, lock_cache)
    assert Lock(dead, cache=lock_cache).locked()
    assert alive.acquire()
    elsewhere = f"reap:{uuid.uuid4().hex}"
    plant(elsewhere, lock_cache, host=f"other-{HOST}", pid=999_999)
    other_namespace = f"reap:{uuid.uuid4().hex}"
    plant(other_namespace, lock_cache, machine=MACHINE.rpartition("/")[0] + "/1", pid=999_999)
    try:
        assert reap_dead_processes(lock_cache) >= 1
        assert not Lock(dead, cache=lock_cache).locked(), "the dead process's lock is freed"
        assert alive.owned(), "a live holder keeps its lock"
        assert Lock(elsewhere, cache=lock_cache).locked(), "another host's lock is left to its TTL"
        assert Lock(other_namespace, cache=lock_cache).locked(), "another PID namespace's too"
    finally:
        alive.release()
        for name in (elsewhere, other_namespace):
            get_backend(lock_cache).clear(get_backend(lock_cache).key(name))


def test_a_holder_from_before_the_last_boot_is_freed(redis_server):
    machine_id, _, namespace = MACHINE.split("/")
    if not machine_id:
        pytest.skip("no /etc/machine-id: a reboot cannot be told from another machine")
    name = f"reap:{uuid.uuid4().hex}"
    plant(name, "default", machine=f"{machine_id}/{uuid.uuid4()}/{namespace}", pid=1)
    assert reap_dead_processes("default") >= 1
    assert not Lock(name).locked()


def test_a_down_cache_is_logged_and_the_worker_starts(settings, caplog, redis_server):
    settings.TASKLOCK = {"CACHE": "redis_down"}
    with caplog.at_level(logging.WARNING, logger="tasklock"):
        on_worker_ready(sender=None)  # returns at once: the reaper runs in a thread
        wait_until(lambda: "could not look for dead holders' locks" in caplog.text, within=10)
