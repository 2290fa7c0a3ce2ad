"""Which machine and process space a holder ran in, and whether a process there is gone.

A pid only means something inside one boot of one kernel and one PID namespace; a host
name alone does not tell containers apart. So a holder records ``machine``: the machine id,
the boot id and the PID namespace. When tasklock cannot tell (not Linux, a field missing),
it says "unknown", and a lock whose holder is unknown is left to its TTL.

Only a holder in this very process space can be proven dead (its pid is gone here). A holder
with this host name and machine id but another boot id is not proof of a reboot: cloned VM
images and containers that share the host's machine id look the same, and their holders may
well be alive. Such locks are left to their lease.
"""

from __future__ import annotations

import os
import socket
import time

HOST = socket.gethostname()


def _read(path: str) -> str:
    try:
        with open(path) as file:
            return file.read().strip()
    except OSError:
        return ""


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


#: this process's PID namespace (the inode of ``/proc/self/ns/pid``), "" where unknown
PID_NAMESPACE = _pid_namespace()


def _machine() -> str | None:
    parts = (_read("/etc/machine-id"), _read("/proc/sys/kernel/random/boot_id"), PID_NAMESPACE)
    return "/".join(parts) if parts[1] and parts[2] else None


#: ``machine-id/boot-id/pid-namespace`` of this process, None where it cannot be known
MACHINE = _machine()


def same_process_space(host: str, machine: str | None) -> bool:
    """True if a holder's pid can be looked up here: same host, boot and PID namespace."""
    return MACHINE is not None and host == HOST and machine == MACHINE


def is_gone(pid: int) -> bool:
    """True if process ``pid`` no longer runs here (absent, or a zombie awaiting its parent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # it exists, under another user
    stat = _read(f"/proc/{pid}/stat")
    state = stat.rpartition(")")[2].split()[:1]
    return not stat or state in (["Z"], ["X"])


def wait_gone(pid: int, within: float, poll: float = 0.005) -> bool:
    """Wait up to ``within`` seconds for ``pid`` to be gone; True if it is."""
    deadline = time.monotonic() + within
    while not is_gone(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
    return True
