"""The holder metadata stored as the value of a lock key."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from json.encoder import encode_basestring

from .processes import HOST, MACHINE

#: a holder whose body runs (every lock but an enqueue-time one whose task still waits)
RUNNING = "running"
#: an enqueue-time lock owned by the task id of a task that waits in the queue
QUEUED = "queued"


def _text(value: str | None) -> str:
    """A str or None as JSON (no ASCII escaping, like ``ensure_ascii=False``)."""
    return "null" if value is None else encode_basestring(value)


#: the holder JSON between ``name`` and ``acquired_at``'s value, by thread name: host, pid and
#: thread are the same for every lock a thread takes (emptied after ``fork``: the pid changes)
_middles: dict[str, str] = {}
#: how many thread names ``_middles`` keeps before it starts over (thread names can be unique)
MAX_THREAD_NAMES = 256
#: the end of every holder JSON written here: the machine never changes within a process
_TAIL = f',"machine":{encode_basestring(MACHINE) if MACHINE is not None else "null"}}}'

os.register_at_fork(after_in_child=_middles.clear)


def _middle(thread: str) -> str:
    """``_middles[thread]``, made and kept on first use."""
    if len(_middles) >= MAX_THREAD_NAMES:
        _middles.clear()
    middle = _middles[thread] = (
        f',"host":{_text(HOST)},"pid":{os.getpid()},"thread":{_text(thread)},"acquired_at":'
    )
    return middle


def _encode(
    token: str, name: str, host: str, pid: int, thread: str, acquired_at: float,
    expires_at: float, timeout: float, task_name: str | None, task_id: str | None, machine: str | None,
    state: str = RUNNING,
) -> str:  # fmt: skip
    """The fields as compact JSON, written directly: four times faster than ``json.dumps``
    of a dict. The floats are finite (timeouts are validated), so their ``repr`` is JSON.
    ``state`` is written only for a queued holder (a running one is the default)."""
    tail = "" if state == RUNNING else f',"state":{_text(state)}'
    return (
        f'{{"token":{_text(token)},"name":{_text(name)},"host":{_text(host)},"pid":{pid},'
        f'"thread":{_text(thread)},"acquired_at":{acquired_at!r},"expires_at":{expires_at!r},'
        f'"timeout":{timeout!r},"task_name":{_text(task_name)},"task_id":{_text(task_id)},'
        f'"machine":{_text(machine)}{tail}}}'
    )


def around_times(value: str) -> tuple[str, str]:
    """An encoded holder's text before its ``acquired_at`` number (field name included) and
    after its ``expires_at`` number, for a server to fill in its own clock. Inside a JSON
    string every quote is escaped, so ``,"acquired_at":`` can only be the field itself."""
    head, field, rest = value.partition(',"acquired_at":')
    return head + field, rest[rest.index(',"timeout":') :]


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a lock, since when and until when (epoch seconds)."""

    token: str
    name: str
    host: str
    pid: int
    thread: str
    acquired_at: float
    expires_at: float
    timeout: float
    task_name: str | None = None
    task_id: str | None = None
    #: ``machine-id/boot-id/pid-namespace`` (see ``processes``); None where unknown
    machine: str | None = None
    #: ``RUNNING``, or ``QUEUED`` for an enqueue-time lock whose task has not started
    state: str = RUNNING

    @classmethod
    def here(
        cls,
        token: str,
        name: str,
        now: float,
        timeout: float,
        task_name: str | None = None,
        task_id: str | None = None,
        state: str = RUNNING,
    ) -> Holder:
        """Metadata for a holder in this process and thread."""
        thread = threading.current_thread().name
        return cls(
            token, name, HOST, os.getpid(), thread, now, now + timeout, timeout, task_name, task_id, MACHINE,
            state,
        )  # fmt: skip

    def renewed(self, now: float, timeout: float) -> Holder:
        """The same holder with a new expiry."""
        return Holder(
            self.token, self.name, self.host, self.pid, self.thread,
            self.acquired_at, now + timeout, timeout, self.task_name, self.task_id, self.machine, self.state,
        )  # fmt: skip

    def encode(self) -> str:
        """Compact JSON of every field, as ``json.dumps`` would write it."""
        return _encode(
            self.token, self.name, self.host, self.pid, self.thread,
            self.acquired_at, self.expires_at, self.timeout, self.task_name, self.task_id, self.machine,
            self.state,
        )  # fmt: skip

    @staticmethod
    def encode_here(
        token: str, name: str, now: float, timeout: float, task_name: str | None, task_id: str | None
    ) -> str:
        """``Holder.here(...).encode()`` without building the Holder: this runs on every acquire,
        so the parts that are the same for every lock of this thread are made once."""
        thread = threading.current_thread().name
        task = (
            '"task_name":null,"task_id":null'
            if task_name is None and task_id is None
            else f'"task_name":{_text(task_name)},"task_id":{_text(task_id)}'
        )
        return (
            f'{{"token":{encode_basestring(token)},"name":{encode_basestring(name)}'
            f"{_middles.get(thread) or _middle(thread)}{now!r},"
            f'"expires_at":{now + timeout!r},"timeout":{timeout!r},{task}{_TAIL}'
        )

    @classmethod
    def decode(cls, raw: str | bytes | None) -> Holder | None:
        """The holder in a stored value; None for a missing or foreign value (one tasklock did
        not write: any text, bytes that are no UTF-8, JSON of another shape, nested too deep)."""
        if raw is None:
            return None
        try:
            return cls(**json.loads(raw))
        except (ValueError, TypeError, RecursionError):
            return None

    @property
    def holder(self) -> str:
        """``host:pid``, as shown by ``locks list``."""
        return f"{self.host}:{self.pid}"
