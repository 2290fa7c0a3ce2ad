from django.apps import AppConfig
from django.core.checks import Tags, register


class TaskLockConfig(AppConfig):
    name = "tasklock"
    verbose_name = "Task locks"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from . import metrics
        from .checks import caches, django_tasks, settings, tasks, topology
        from .integrations import celery_worker, django_worker

        celery_worker.connect()
        django_worker.connect()
        metrics.connect()
        register(settings.check_settings, "tasklock")
        register(caches.check_lock_cache, Tags.caches, "tasklock")
        register(tasks.check_time_limits, "tasklock")
        register(tasks.check_unique_tasks, "tasklock")
        register(django_tasks.check_django_tasks, "tasklock")
        register(tasks.check_visibility_timeout, "tasklock", deploy=True)
        register(caches.check_eviction_policy, Tags.caches, "tasklock", deploy=True)
        register(caches.check_ignore_exceptions, Tags.caches, "tasklock", deploy=True)
        register(topology.check_redis_topology, Tags.caches, "tasklock", deploy=True)
