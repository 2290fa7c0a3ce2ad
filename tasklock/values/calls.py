"""The words of a plan: the lock's behaviour written once, sans-I/O.

A plan is a generator that yields the cache calls it needs (``Call``: a ``LockBackend``
method and its arguments), receives each reply (or has the call's exception thrown in), and
returns its outcome; it never does I/O itself. A face drives it: ``core.drivers.drive`` calls
the adapter synchronously; an async face awaits the same calls. So the sync and async faces
cannot drift apart: what to send and what a reply means live in the plan alone.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any, NamedTuple, TypeVar

from .holder import Holder

T = TypeVar("T")


class Call(NamedTuple):
    """One call of a backend adapter's method ``operation`` with ``args``."""

    operation: str
    args: tuple[Any, ...]


#: a plan that returns a ``T``
Plan = Generator[Call, Any, T]


def one(call: Call) -> Plan[Any]:
    """The plan of a single call: its reply."""
    return (yield call)


class Attempt(NamedTuple):
    """One acquire, as a backend's acquiring plan needs it."""

    key: str
    token: str
    name: str
    timeout: float
    #: the running task's name and id, for the holder's metadata
    task_name: str | None
    task_id: str | None
    #: whether to wait for the lock (until ``give_up``) or try once
    blocking: bool
    #: the monotonic time after which a blocked acquire gives up
    give_up: float
    #: serve waiters in arrival order, newcomers included (backends that hand over)
    fair: bool
    #: how many holders the name may have at once (``values.slots``)
    limit: int = 1

    def value(self) -> str:
        """The holder metadata to write, stamped now."""
        return Holder.encode_here(
            self.token, self.name, time.time(), self.timeout, self.task_name, self.task_id
        )


class Grant(NamedTuple):
    """A won acquisition: the value the lock holds, its fencing token (any positive number
    where the backend does not fence), and the monotonic time its lease started (no later)."""

    value: str
    fence: int
    since: float
