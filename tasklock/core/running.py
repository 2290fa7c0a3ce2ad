"""Which task runs in this context, as the task integrations tell the lock core.

The core stamps a holder's metadata with the running task's name and id but knows no task
framework: Celery's ``task_prerun``/``task_postrun`` handlers and ``task_lock`` set this
variable (a ``ContextVar``, so each thread, greenlet and asyncio task sees its own), and a
new framework plugs in the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import NamedTuple


class Running(NamedTuple):
    """A running task: its name (None for a plain function) and id (None when called directly)."""

    name: str | None
    id: str | None


NOTHING = Running(None, None)

#: the task running in this context; None outside any task
task: ContextVar[Running | None] = ContextVar("tasklock_running_task", default=None)


def current() -> Running:
    """The task running in this context, or ``NOTHING``."""
    return task.get() or NOTHING


@contextmanager
def running(name: str | None, task_id: str | None) -> Iterator[None]:
    """Run the block as task ``name`` with id ``task_id`` (for the locks it takes)."""
    token = task.set(Running(name, task_id))
    try:
        yield
    finally:
        task.reset(token)
