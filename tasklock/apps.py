from django.apps import AppConfig


class TaskLockConfig(AppConfig):
    name = "tasklock"
    verbose_name = "Task locks"
    default_auto_field = "django.db.models.AutoField"
