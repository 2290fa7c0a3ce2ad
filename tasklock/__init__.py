"""tasklock: only one Celery worker runs this at a time, on the Django cache framework."""

from .core.blocks import alock, lock
from .core.lock import Lock
from .exceptions import DuplicateTask, LockError, LockNotAcquired
from .integrations.decorator import task_lock
from .integrations.holding import SKIPPED, held_lock
from .operations.clearing import clear
from .operations.inventory import held_locks

__all__ = [
    "SKIPPED",
    "DuplicateTask",
    "Lock",
    "LockError",
    "LockNotAcquired",
    "alock",
    "clear",
    "held_lock",
    "held_locks",
    "lock",
    "task_lock",
]
