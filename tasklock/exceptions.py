"""Errors raised by tasklock, and how their messages show a lock name."""

#: a name longer than this is cut in messages (names come from task arguments: any length)
SHOWN_CHARS = 100


class LockError(Exception):
    """A lock operation failed: the cache could not answer, or the lock was misused."""


class LockNotAcquired(LockError):
    """The lock is held by someone else."""


def shown(name: str) -> str:
    """``repr(name)``, cut after ``SHOWN_CHARS`` characters with the full length appended."""
    if len(name) <= SHOWN_CHARS:
        return repr(name)
    return f"{name[:SHOWN_CHARS]!r}…({len(name)} chars)"


class DuplicateTask(LockNotAcquired):
    """An enqueue-time unique task is already queued or running; ``task_id`` is its id (None
    when the lock's holder is no task, e.g. a ``Lock`` taken by a script)."""

    def __init__(self, message: str, task_id: str | None = None) -> None:
        super().__init__(message)
        self.task_id = task_id

    def __reduce__(self) -> tuple[type, tuple[str, str | None]]:
        return type(self), (str(self), self.task_id)
