"""``tasklock.celery.UniqueTask``: the Celery base class for tasks locked with ``unique=``
(defined in ``tasklock.integrations.unique_task``; this is its public import path)."""

from .integrations.unique_task import UniqueTask

__all__ = ["UniqueTask"]
