import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

app = Celery("tasklock_tests", include=["tests.tasks", "tests.unique_tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
