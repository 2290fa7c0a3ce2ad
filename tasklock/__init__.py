"""tasklock: only one Celery worker runs this at a time, on the Django cache framework."""

from .decorators import SKIPPED, held_lock, task_lock
from .exceptions import DuplicateTask, LockError, LockNotAcquired
from .lock import Lock, lock

__all__ = [
    "SKIPPED",
    "DuplicateTask",
    "Lock",
    "LockError",
    "LockNotAcquired",
    "held_lock",
    "lock",
    "task_lock",
]
