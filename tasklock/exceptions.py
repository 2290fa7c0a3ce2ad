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
