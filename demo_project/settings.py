"""Settings for the tasklock demo project.

Environment variables:

- ``REDIS_URL``: the Redis that holds the cache (and so the locks), Celery's broker and
  its results; default ``redis://127.0.0.1:6379/0``. The demo keeps every key it writes
  under ``tasklock-demo`` and never flushes a database, so a shared Redis is safe.
- ``DEMO_CACHE_BACKEND``: replaces the default cache's BACKEND, e.g.
  ``django.core.cache.backends.locmem.LocMemCache`` to see tasklock's system check refuse it.
- ``DEMO_DATABASE``: the SQLite file (default ``demo.sqlite3`` next to ``manage.py``).
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "tasklock-demo-not-a-secret")
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "tasklock",
    "demo_project.games",
    "django_tasks_db",  # `manage.py demo --django-tasks`: Django's tasks on db_worker
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "demo_project.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DEMO_DATABASE", BASE_DIR / "demo.sqlite3"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"

#: everything the demo writes to Redis starts with this: cache keys, locks, queue, results
DEMO_KEY_PREFIX = "tasklock-demo"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

CACHES = {
    "default": {
        "BACKEND": os.environ.get("DEMO_CACHE_BACKEND", "django_redis.cache.RedisCache"),
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": DEMO_KEY_PREFIX,
    }
}

TASKLOCK = {
    "CACHE": "default",
    "KEY_PREFIX": "tasklock",
    "TIMEOUT": 60,
}

#: Django's tasks (``manage.py demo --django-tasks``) on the demo's database
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["tasklock-demo"]}}

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": f"{DEMO_KEY_PREFIX}:"}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"global_keyprefix": f"{DEMO_KEY_PREFIX}:"}
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_DEFAULT_QUEUE = DEMO_KEY_PREFIX
CELERY_TASK_TIME_LIMIT = 30
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
