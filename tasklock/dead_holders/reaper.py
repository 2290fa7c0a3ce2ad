"""Freeing the locks of dead holders: processes of this machine that died holding a lock.

When a prefork child dies holding a lock (SIGKILL, the OOM killer, a hard time limit,
``revoke(terminate=True)``), the worker's main process hears of it; a task integration then
rebuilds the task's lock name from its arguments and calls ``reap_holder``, which waits until
the holder's process is really gone and deletes the lock only if its holder metadata names
that task id, this machine and that dead process. A child may also die before the main
process has seen it run anything: each pool child keeps a journal of the locks it holds
(``core.journal``), and the child watcher hands those of a dying child to
``free_journalled``. At worker start ``reap_dead_processes`` frees the locks of processes of
this process space that no longer exist. A live holder's lock is never touched: copies of one
task id can run at the same time, each with its own pid.
"""

from __future__ import annotations

import logging

from django.db import connections

from ..backends import get_backend
from ..backends.base import LockBackend
from ..core import journal
from ..core.lock import Lock
from ..signals import lock_reaped
from ..values.holder import QUEUED, Holder
from ..values.processes import is_gone, same_process_space, wait_gone
from ..values.slots import held_values

logger = logging.getLogger("tasklock")

#: how long the main process waits for a dying child to be gone before it leaves the lock
#: to its lease (a child killed by a hard time limit gets SIGTERM, then SIGKILL 0.1 s later)
GONE_WITHIN = 5.0


def _free(backend: LockBackend, key: str, stored: str, value: str, holder: Holder, reason: str) -> bool:
    """Free holder ``value`` of ``key`` (its value ``stored``: ``value``, or a limited name's
    record, whose other holders keep their slots) if it still holds it; log and signal it."""
    if not backend.delete_holder(key, stored, value):
        return False
    logger.warning(
        "freed lock %r of dead holder %s (task %s, %s)", holder.name, holder.holder, holder.task_id, reason
    )
    if lock_reaped.receivers:
        lock_reaped.send_robust(sender=Lock, name=holder.name, holder=holder, reason=reason)
    return True


def reap_holder(name: str, alias: str | None, task_id: str, reason: str) -> bool:
    """Free lock ``name`` in cache ``alias`` if it is held by task ``task_id`` in a process of
    this machine that is gone (waiting up to ``GONE_WITHIN`` for it to go). True if freed."""
    backend = get_backend(alias)
    key = backend.key(name)
    stored = backend.get(key)
    if stored is None:
        return False
    freed = False
    for value in held_values(stored):
        holder = Holder.decode(value)
        if holder is None or holder.task_id != task_id or holder.state == QUEUED:
            continue  # a queue lock waits for a message on the broker, not for a process
        if same_process_space(holder.host, holder.machine) and wait_gone(holder.pid, GONE_WITHIN):
            freed = _free(backend, key, stored, value, holder, reason) or freed
    return freed


def _dead(value: str) -> Holder | None:
    holder = Holder.decode(value)
    if holder is None or holder.state == QUEUED:
        return None  # a queue lock's holder is its publisher, which may well have exited
    if same_process_space(holder.host, holder.machine) and is_gone(holder.pid):
        return holder
    return None


def reap_dead_processes(alias: str | None = None) -> int:
    """Free every lock in cache ``alias`` whose holder was a process of this process space (host,
    boot and PID namespace) that no longer exists. The number freed. A holder of another boot
    or namespace cannot be proven dead (a clone of this machine looks the same): its lock is
    left to its lease."""
    backend = get_backend(alias)
    freed = 0
    for batch in backend.scan():
        unread = [stored.key for stored in batch if stored.value is None]
        read = {stored.key: stored for stored in backend.read(unread)} if unread else {}
        for stored in batch:
            stored = read.get(stored.key, stored)
            for value in held_values(stored.value):
                holder = _dead(value)
                if holder is not None and stored.value is not None:
                    freed += _free(backend, stored.key, stored.value, value, holder, "dead-process")
    return freed


def free_journalled(pid: int) -> int:
    """Free the locks that pool child ``pid``, now gone, wrote in its journal and whose holder
    metadata still names it (its token, pid and process space). The number freed."""
    freed = 0
    for entry in journal.entries(pid):
        try:
            backend = get_backend(entry.alias)
            stored = backend.get(entry.key)
            for value in held_values(stored):
                holder = Holder.decode(value)
                if (
                    stored is not None
                    and holder is not None
                    and holder.token == entry.token
                    and holder.pid == pid
                    and holder.state != QUEUED  # a queue lock waits for its task's next message
                    and same_process_space(holder.host, holder.machine)
                ):
                    freed += _free(backend, entry.key, stored, value, holder, "worker-lost")
        except Exception:
            logger.warning("could not free lock %r of dead process %s", entry.key, pid, exc_info=True)
    connections.close_all()  # the watcher thread's, if the lock cache is a database
    return freed
