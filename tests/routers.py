"""Database routers of the test settings."""

from django.apps import apps
from django.db import connections


class TaskResultsOnPostgres:
    """django-tasks-db's table (issue 21) lives only in the default database, and only when that
    is PostgreSQL (where the db_worker tests run): its JSONField's system check would otherwise
    open a connection to each SQLite database while the suite runs ``check``, which pytest-django
    forbids outside database tests."""

    def allow_migrate(self, db: str, app_label: str, **hints: object) -> bool | None:
        config = apps.app_configs.get(app_label)  # its label is not its name (django_tasks_database)
        if config is None or config.name != "django_tasks_db":
            return None
        return db == "default" and connections[db].vendor == "postgresql"
