"""The lock journal of a prefork pool child (issue 17, item 6): what the worker's main process
reads when the child dies, and what crosses a fork (nothing)."""

import os
import subprocess
import sys
import tempfile
import uuid

import pytest

from tasklock import Lock
from tasklock.core import journal
from tasklock.values.processes import PID_NAMESPACE


@pytest.fixture
def journals():
    """A journals directory made by this process, as a worker's main process makes one."""
    made = journal.open_directory()
    yield made
    journal.remove_directory()


def in_a_pool_child(body) -> int:
    """Fork, start the child's journal, run ``body()`` there; the child's pid once it exited."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            journal.start()
            body()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return pid


def test_a_child_journals_what_it_holds_until_it_lets_go(journals):
    def body() -> None:
        assert journal.fd is not None
        for number in range(3):
            journal.took("default", f":1:tasklock:held{number}", f"token{number}")
        journal.let_go("token1")
        journal.took("memcached", ":1:tasklock:again", "token3")  # takes the slot let go

    pid = in_a_pool_child(body)
    assert journal.children() == [pid]
    assert sorted(journal.entries(pid)) == [
        ("default", ":1:tasklock:held0", "token0"),
        ("default", ":1:tasklock:held2", "token2"),
        ("memcached", ":1:tasklock:again", "token3"),
    ]
    assert os.path.getsize(os.path.join(journals, str(pid))) < 3 * journal.SLOT
    journal.forget(pid)
    assert journal.children() == []


def test_a_process_a_child_forks_keeps_no_journal(journals):
    """A body that forks helpers: a helper's locks are its own, and it never writes in (or
    blanks a slot of) the child's journal."""

    def body() -> None:
        journal.took("default", ":1:tasklock:child", "child-token")
        helper = os.fork()
        if helper == 0:
            code = 0 if journal.fd is None else 1
            journal.took("default", ":1:tasklock:helper", "helper-token")
            journal.let_go("child-token")
            os._exit(code)
        _, status = os.waitpid(helper, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the helper started with no journal"

    pid = in_a_pool_child(body)
    assert list(journal.entries(pid)) == [("default", ":1:tasklock:child", "child-token")]


def test_the_main_process_keeps_no_journal(journals):
    """A solo worker sends ``worker_process_init`` in its main process, which runs the bodies."""
    journal.start()
    assert journal.fd is None and journal.children() == []


def test_journals_of_a_worker_killed_whole_are_removed_at_the_next_start():
    gone = int(
        subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout
    )
    prefix = f"tasklock-journals-{PID_NAMESPACE}-"
    stale = tempfile.mkdtemp(prefix=f"{prefix}{gone}-")
    alive = tempfile.mkdtemp(prefix=f"{prefix}{os.getppid()}-")
    try:
        journal.open_directory()
        assert not os.path.exists(stale), "a dead worker's journals are removed"
        assert os.path.exists(alive), "a live worker's are kept"
    finally:
        journal.remove_directory()
        os.rmdir(alive)


def test_a_journal_that_cannot_be_written_never_fails_a_lock(lock_cache, monkeypatch, tmp_path):
    """A full disk (here: a journal open read-only) costs the lock its entry, not its acquire."""
    unwritable = tmp_path / "journal"
    unwritable.write_bytes(b"")
    fd = os.open(unwritable, os.O_RDONLY)
    monkeypatch.setattr(journal, "fd", fd)
    try:
        held = Lock(f"journal:{uuid.uuid4().hex}", timeout=30, cache=lock_cache)
        assert held.acquire() and held.owned()
        assert held.release() is True
    finally:
        os.close(fd)
