"""tasklock: only one Celery worker runs this at a time, on the Django cache framework."""

from .clearing import clear
from .decorators import SKIPPED, held_lock, task_lock
from .exceptions import DuplicateTask, LockError, LockNotAcquired
from .inventory import held_locks
from .lock import Lock, lock

__all__ = [
    "SKIPPED",
    "DuplicateTask",
    "Lock",
    "LockError",
    "LockNotAcquired",
    "clear",
    "held_lock",
    "held_locks",
    "lock",
    "task_lock",
]
