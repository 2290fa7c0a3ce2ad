"""Each prefork pool child's journal of the locks it holds, for the worker's main process.

A child can die at any instant of a locked body, before the main process has seen which task
it runs (a SIGKILL in the body's first milliseconds; with ``acks_late`` and
``reject_on_worker_lost`` Celery then sends no failure signal at all). So every pool child
writes down each lock it takes, as it takes it: a file per child, named by its pid, in a
private directory that the main process makes before its pool forks. A lock is one slot of
``SLOT`` bytes (``+``, then its token, cache alias and key, each ended by a NUL), written with
one ``pwrite`` when taken and blanked with another when released. When a child dies, the main
process reads its file and frees each lock there whose holder is still that child (see
``reaper``). A journal that cannot be written (a full disk) never fails an acquire or a
release: that lock is left to its lease, as without a journal.

Only pool children keep a journal (not the main process of a ``solo`` or ``threads``
worker, and not processes a body forks: the journal is closed in them).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import NamedTuple

from ..values.processes import PID_NAMESPACE, is_gone

#: the bytes one lock takes in a journal (a key is at most 250 bytes, or hashed)
SLOT = 512
TAKEN = b"+"
FREE = b"\0"

#: the directory of journals, made by the worker's main process (None: no journals)
directory: str | None = None
#: the pid of the process that made ``directory``
_owner = 0
#: this pool child's journal, open for writing (None outside a pool child)
fd: int | None = None
#: the slot of each lock (by token) written in this child's journal
_slots: dict[str, int] = {}
#: slots written before and freed since
_free: list[int] = []
_next_slot = itertools.count()


class Entry(NamedTuple):
    """A lock a child took and had not released: where it is and whose it is."""

    alias: str
    key: str
    token: str


def open_directory() -> str:
    """In the worker's main process, before its pool forks: make the journals' directory (and
    remove those that workers of this PID namespace, now gone, left behind: a SIGKILLed
    worker never removes its own)."""
    global directory, _owner
    prefix = f"tasklock-journals-{PID_NAMESPACE}-"
    for entry in os.scandir(tempfile.gettempdir()):
        owner = entry.name.removeprefix(prefix).partition("-")[0]
        if entry.name.startswith(prefix) and owner.isdigit() and is_gone(int(owner)):
            shutil.rmtree(entry.path, ignore_errors=True)
    _owner = os.getpid()
    directory = tempfile.mkdtemp(prefix=f"{prefix}{_owner}-")
    return directory


def remove_directory() -> None:
    """At worker shutdown: remove the journals (a child still running keeps its open file)."""
    global directory
    if directory is not None and os.getpid() == _owner:
        shutil.rmtree(directory, ignore_errors=True)
        directory = None


def start() -> None:
    """In a pool child, at its start: open its own, empty journal."""
    global fd
    if directory is None or os.getpid() == _owner:  # the main process runs tasks itself (solo)
        return
    fd = os.open(os.path.join(directory, str(os.getpid())), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)


def took(alias: str, key: str, token: str) -> None:
    """Write down lock ``key`` of cache ``alias``, held by ``token``: one ``pwrite``."""
    record = f"+{token}\0{alias}\0{key}\0".encode()
    if fd is None or len(record) > SLOT:
        return  # no journal (a fork of this child), or a key no cache makes: left to the lease
    slot = _slots.get(token)
    if slot is None:
        try:
            slot = _free.pop()
        except IndexError:
            slot = next(_next_slot)
        _slots[token] = slot
    try:
        os.pwrite(fd, record, slot * SLOT)
    except OSError:  # the lock is held all the same; only its journal entry is missing
        return


def let_go(token: str) -> None:
    """Blank the slot of the lock held by ``token``, if it has one: one ``pwrite``."""
    slot = _slots.pop(token, None)
    if slot is not None and fd is not None:
        try:
            os.pwrite(fd, FREE, slot * SLOT)
        except OSError:
            return  # the slot stays taken: its stale entry names a lock this child let go
        _free.append(slot)


def children() -> list[int]:
    """The pids of the pool children that have a journal."""
    if directory is None:
        return []
    try:
        return [int(name) for name in os.listdir(directory) if name.isdigit()]
    except FileNotFoundError:
        return []


def entries(pid: int) -> Iterator[Entry]:
    """The locks child ``pid`` took and had not released (as far as it got to write)."""
    if directory is None:
        return
    try:
        with open(os.path.join(directory, str(pid)), "rb") as file:
            written = file.read()
    except FileNotFoundError:
        return
    for start in range(0, len(written), SLOT):
        record = written[start : start + SLOT]
        fields = record[1:].decode("utf-8", "replace").split("\0")
        if record.startswith(TAKEN) and len(fields) > 3 and all(fields[:3]):
            yield Entry(alias=fields[1], key=fields[2], token=fields[0])


def forget(pid: int) -> None:
    """Remove the journal of child ``pid``, once its death has been dealt with."""
    if directory is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, str(pid)))


def _forget_after_fork() -> None:
    """A forked process starts with no journal of its own (its parent's stays its parent's)."""
    global fd, _next_slot
    if fd is not None:
        os.close(fd)
    fd = None
    _slots.clear()
    _free.clear()
    _next_slot = itertools.count()


os.register_at_fork(after_in_child=_forget_after_fork)
