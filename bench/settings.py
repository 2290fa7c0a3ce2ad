"""Django settings for the benchmarks; server addresses come from the environment, which
``bench.environment`` fills in, so worker and waiter subprocesses see the same ones."""

import os

SECRET_KEY = "tasklock-bench"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "tasklock"]

_redis = os.environ.get("TASKLOCK_BENCH_REDIS", "127.0.0.1:1")
_memcached = os.environ.get("TASKLOCK_BENCH_MEMCACHED", "127.0.0.1:1")

#: the throwaway database bench.environment creates on the machine's PostgreSQL
_database = os.environ.get("TASKLOCK_BENCH_DB_NAME", "postgres")
DATABASES = {
    "default": dict(
        ENGINE="django.db.backends.postgresql", HOST="127.0.0.1", PORT=5432, USER="postgres", NAME=_database
    )
}
CACHES = {
    "default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": f"redis://{_redis}/0"},
    "redis": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": f"redis://{_redis}/0"},
    "memcached": {"BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache", "LOCATION": _memcached},
    "database": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "tasklock_bench_cache",
        "OPTIONS": {"MAX_ENTRIES": 100_000},
    },
}
TASKLOCK = {"KEY_PREFIX": "bench"}

CELERY_BROKER_URL = f"redis://{_redis}/1"
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
