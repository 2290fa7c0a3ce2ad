"""The worker-start reaper: it frees the locks of this machine's dead processes, and only
those; a cache it cannot reach is logged and never stops the worker."""

import logging
import shutil
import subprocess
import sys
import textwrap
import uuid

import pytest

from tasklock import Lock
from tasklock.backends import get_backend
from tasklock.dead_holders.reaper import reap_dead_processes
from tasklock.integrations.celery_worker import on_worker_ready
from tasklock.values.holder import Holder
from tasklock.values.processes import HOST, MACHINE
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


def a_dead_pid() -> int:
    """The pid of a process of this machine that has exited."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True
    )
    return int(done.stdout)


def test_a_holder_of_another_boot_is_left_to_its_lease(lock_cache):
    """Issue 17, item 3: the same host name and machine id with another boot id is a reboot of
    this machine or a clone of it (a cloned VM image, a container sharing the host's machine
    id); nothing tells them apart, so the holder may be alive."""
    machine_id, _, namespace = MACHINE.split("/")
    dead = f"reap:{uuid.uuid4().hex}"
    held_by_a_dead_process(dead, lock_cache)
    other_boot = f"reap:{uuid.uuid4().hex}"
    plant(other_boot, lock_cache, machine=f"{machine_id}/{uuid.uuid4()}/{namespace}", pid=a_dead_pid())
    backend = get_backend(lock_cache)
    try:
        assert reap_dead_processes(lock_cache) >= 1
        assert not Lock(dead, cache=lock_cache).locked(), "a dead pid of this process space is freed"
        assert Lock(other_boot, cache=lock_cache).locked(), "another boot's holder is left to its lease"
    finally:
        backend.clear(backend.key(other_boot))


#: in a PID and mount namespace whose boot id reads differently (a clone of this machine): hold
#: a lock, say so, and keep it until stdin closes
CLONE_HOLDS = """
import sys, django
django.setup()
from tasklock import Lock
held = Lock(sys.argv[1], timeout=60, cache=sys.argv[2])
assert held.acquire()
print("held", flush=True)
sys.stdin.read()
assert held.release()
"""


def unshare_works() -> bool:
    done = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount", "--mount-proc", "true"], capture_output=True
    )
    return done.returncode == 0


def test_a_live_holder_on_a_clone_of_this_machine_keeps_its_lock(lock_cache, tmp_path):
    """The issue's reproduction: a live holder with this host name and machine id, another
    boot id and PID namespace; a reaper here must not free its lock."""
    if shutil.which("unshare") is None or not unshare_works():
        pytest.skip("no unshare, or no right to make PID and mount namespaces here")
    boot_id = tmp_path / "boot_id"
    boot_id.write_text(f"{uuid.uuid4()}\n")
    name = f"reap:{uuid.uuid4().hex}"
    script = textwrap.dedent(CLONE_HOLDS)
    clone = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount", "--mount-proc", "sh", "-c",
         'mount --bind "$0" /proc/sys/kernel/random/boot_id && exec "$1" -c "$2" "$3" "$4"',
         str(boot_id), sys.executable, script, name, lock_cache],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert clone.stdout.readline() == "held\n"
        probe = Lock(name, cache=lock_cache)
        value = probe._backend.get(probe._key)
        holder = Holder.decode(value)
        assert holder.host == HOST and holder.machine.split("/")[0] == MACHINE.split("/")[0]
        assert holder.machine != MACHINE, "the clone has its own boot id and PID namespace"
        reap_dead_processes(lock_cache)
        assert probe._backend.get(probe._key) == value, "the clone's live holder kept its lock"
    finally:
        clone.stdin.close()
        assert clone.wait(60) == 0, "the clone released its own lock"


def test_a_down_cache_is_logged_and_the_worker_starts(settings, caplog, redis_server):
    settings.TASKLOCK = {"CACHE": "redis_down"}
    with caplog.at_level(logging.WARNING, logger="tasklock"):
        on_worker_ready(sender=None)  # returns at once: the reaper runs in a thread
        wait_until(lambda: "could not look for dead holders' locks" in caplog.text, within=10)
