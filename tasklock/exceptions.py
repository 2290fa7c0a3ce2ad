"""Errors raised by tasklock."""


class LockError(Exception):
    """A lock operation failed: the cache could not answer, or the lock was misused."""


class LockNotAcquired(LockError):
    """The lock is held by someone else."""
