"""What a ``task_lock`` body sees of its lock: ``held_lock()``, and ``SKIPPED``, what a
skipped call returns — shared by the sync and the async wrapper."""

from __future__ import annotations

from contextvars import ContextVar

from ..core.lock import Lock

SKIPPED = "tasklock:skipped"

#: the Lock that the innermost task_lock body running in this context holds
holding: ContextVar[Lock | None] = ContextVar("tasklock_held", default=None)


def held_lock() -> Lock | None:
    """The Lock held by the innermost ``task_lock`` body running in this thread or async
    context; None outside one."""
    return holding.get()
