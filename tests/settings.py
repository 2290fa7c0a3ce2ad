"""Settings for the test suite. Server addresses come from the environment, which the
harness (tests/conftest.py) fills in after starting its own servers, so that worker and
contender subprocesses see the same ones."""

import hashlib
import importlib.util
import os

from redis.sentinel import Sentinel

from tests.servers import IN_CI, SENTINEL_SERVICE, postgres_answers, reserve_addresses

reserve_addresses()

#: one test database per checkout: two checkouts' runs on one machine never share one
CHECKOUT = hashlib.sha256(os.path.dirname(os.path.dirname(os.path.abspath(__file__))).encode()).hexdigest()[
    :8
]

SECRET_KEY = "tasklock-tests"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.urls"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",  # the live server serves the admin's CSS to the browser test
    "tasklock",
    "tests",
    "django_tasks_db",  # issue 21: db_worker runs the Django tasks of tests/django_tasks.py
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
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
STATIC_URL = "/static/"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

if os.environ.get("TASKLOCK_TEST_DATABASE") != "sqlite" and (IN_CI or postgres_answers()):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": "127.0.0.1",
            "PORT": 5432,
            "USER": "postgres",
            "NAME": os.environ.get("TASKLOCK_TEST_DB_NAME", "tasklock"),
            "TEST": {"NAME": os.environ.get("TASKLOCK_TEST_DB_NAME", f"test_tasklock_{CHECKOUT}")},
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("TASKLOCK_TEST_DB_NAME", "/tmp/tasklock-tests.sqlite3"),
            "TEST": {"NAME": os.environ.get("TASKLOCK_TEST_DB_NAME", "/tmp/tasklock-tests.sqlite3")},
        }
    }

#: a second database on SQLite, for the database cache's listing there (LIKE ignores case)
DATABASES["sqlite"] = {"ENGINE": "django.db.backends.sqlite3", "NAME": "/tmp/tasklock-tests-sqlite.sqlite3"}


def build_caches(environ=os.environ) -> dict:
    """Every cache the tests lock on, from the harness's server addresses."""
    redis = environ["TASKLOCK_TEST_REDIS"]
    memcached = environ["TASKLOCK_TEST_MEMCACHED"]
    down = environ["TASKLOCK_TEST_DOWN"]
    cluster = [f"redis://{address}" for address in environ["TASKLOCK_TEST_CLUSTER"].split(",")]
    sentinel = environ["TASKLOCK_TEST_SENTINEL"].split(",")[2].split(":")
    return {
        "default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": f"redis://{redis}/0"},
        "redis": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": f"redis://{redis}/0"},
        "memcached": {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": memcached,
        },
        "prefixed": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://{redis}/0",
            "KEY_PREFIX": "app",
            "VERSION": 3,
        },
        "subclassed_memcached": {"BACKEND": "tests.cache_backends.SubclassedMemcache", "LOCATION": memcached},
        "vendor_redis": {
            "BACKEND": "tests.cache_backends.VendorRedisCache",
            "LOCATION": f"redis://{redis}/0",
        },
        "database": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "tasklock_cache"},
        "database_dropped": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "tasklock_dropped_cache",
        },
        "valkey": {"BACKEND": "django_valkey.cache.ValkeyCache", "LOCATION": f"valkey://{redis}/0"},
        "cluster": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": ",".join(cluster),
            "OPTIONS": {"CLIENT_CLASS": "tasklock.contrib.redis_cluster.DjangoRedisClusterClient"},
        },
        "django_cluster": {
            "BACKEND": "tasklock.contrib.redis_cluster.RedisClusterCache",
            "LOCATION": cluster,
        },
        "valkey_cluster": {
            "BACKEND": "django_valkey.cluster_cache.cache.ClusterValkeyCache",
            "LOCATION": cluster[0].replace("redis://", "valkey://"),
        },
        "sentinel": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://{SENTINEL_SERVICE}/0",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.SentinelClient",
                "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
                "SENTINELS": [(sentinel[0], int(sentinel[1]))],
                "SOCKET_TIMEOUT": 2,
            },
        },
        "django_sentinel": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://{SENTINEL_SERVICE}/0",
            "OPTIONS": {
                "pool_class": "redis.sentinel.SentinelConnectionPool",
                "service_name": SENTINEL_SERVICE,
                "sentinel_manager": Sentinel([(sentinel[0], int(sentinel[1]))], socket_timeout=2),
                "socket_timeout": 2,
            },
        },
        "locmem": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "dummy": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
        "redis_down": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://{down}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5, "IGNORE_EXCEPTIONS": True},
        },
        "django_redis_down": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://{down}/0",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        },
        "memcached_half_down": {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": [memcached, down],
            "OPTIONS": {"connect_timeout": 0.5, "timeout": 0.5},
        },
        "memcached_down": {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": down,
            "OPTIONS": {"connect_timeout": 0.5, "timeout": 0.5},
        },
    }


CACHES = build_caches()

_redis = os.environ["TASKLOCK_TEST_REDIS"]
CELERY_BROKER_URL = f"redis://{_redis}/1"
CELERY_RESULT_BACKEND = f"redis://{_redis}/2"
CELERY_TASK_DEFAULT_QUEUE = "tasklock-tests"
#: issue 11: a queue no worker consumes, where tests count the messages published
CELERY_TASK_ROUTES = {"tests.unique_tasks.idle_*": {"queue": "tasklock-unique-idle"}}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

DATABASE_ROUTERS = ["tests.routers.TaskResultsOnPostgres"]

#: issue 21: Django's tasks on the ORM (django-tasks-db, on the test database); "immediate"
#: runs a task at enqueue and cannot defer one
TASKS = {
    "default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default", "tasklock-kill"]},
    "immediate": {
        "BACKEND": (
            "django.tasks.backends.immediate.ImmediateBackend"
            if importlib.util.find_spec("django.tasks")
            else "django_tasks.backends.immediate.ImmediateBackend"
        )
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"tasklock": {"handlers": ["console"], "level": "WARNING"}},
}
