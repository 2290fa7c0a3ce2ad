"""Task integrations: ``task_lock`` (names from a task's arguments, policies when held),
Celery (which task runs, ``UniqueTask``, the worker's signal handlers) and uniqueness."""
