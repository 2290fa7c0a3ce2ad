from django.apps import AppConfig
from django.core.checks import Tags, register


class TaskLockConfig(AppConfig):
    name = "tasklock"
    verbose_name = "Task locks"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from . import checks, reaper, topology_checks, unique

        reaper.connect()
        unique.connect()
        register(checks.check_settings, "tasklock")
        register(checks.check_lock_cache, Tags.caches, "tasklock")
        register(checks.check_time_limits, "tasklock")
        register(checks.check_unique_tasks, "tasklock")
        register(checks.check_visibility_timeout, "tasklock", deploy=True)
        register(checks.check_eviction_policy, Tags.caches, "tasklock", deploy=True)
        register(checks.check_ignore_exceptions, Tags.caches, "tasklock", deploy=True)
        register(topology_checks.check_redis_topology, Tags.caches, "tasklock", deploy=True)
