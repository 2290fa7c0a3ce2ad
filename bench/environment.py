"""The servers a benchmark run uses: its own Redis and memcached on free loopback ports, and
a throwaway database on the machine's PostgreSQL; plus what the report says about the machine."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from importlib.metadata import PackageNotFoundError, version

import psycopg
from psycopg import sql

from tests.servers import find_binary, free_port, start_memcached, start_redis

POSTGRES = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
#: the distributions whose versions the report names
PACKAGES = (
    "Django", "celery", "kombu", "redis", "django-redis", "pymemcache", "psycopg",
    "python-redis-lock", "celery-once",
)  # fmt: skip


def _autocommit(statement: sql.Composed) -> None:
    with psycopg.connect(POSTGRES, autocommit=True) as connection:
        connection.execute(statement)


@contextmanager
def throwaway_database() -> Iterator[str]:
    """A fresh PostgreSQL database of this run's own, dropped at the end."""
    name = f"tasklock_bench_{os.getpid()}"
    _autocommit(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        from django.db import connections

        connections.close_all()
        _autocommit(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def servers() -> Iterator[None]:
    """Start Redis, memcached and the database, point the settings at them, set Django up."""
    with ExitStack() as stack:
        redis = start_redis(free_port())
        stack.callback(redis.stop)
        memcached = start_memcached(free_port())
        stack.callback(memcached.stop)
        database = stack.enter_context(throwaway_database())
        os.environ["TASKLOCK_BENCH_REDIS"] = f"127.0.0.1:{redis.port}"
        os.environ["TASKLOCK_BENCH_MEMCACHED"] = f"127.0.0.1:{memcached.port}"
        os.environ["TASKLOCK_BENCH_DB_NAME"] = database
        os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
        setup_django()
        from django.core.management import call_command

        call_command("createcachetable", "tasklock_bench_cache", verbosity=0)
        yield


def setup_django() -> None:
    """Configure Django from ``bench.settings`` (in this process or a subprocess)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _server_version(binary: str) -> str:
    out = subprocess.run([find_binary(binary, binary), "--version"], capture_output=True, text=True)
    return out.stdout.split("\n")[0].strip()


def machine() -> dict[str, str]:
    """nproc, CPU model, OS, Python, server and package versions."""
    facts = {
        "CPUs (nproc)": str(os.cpu_count()),
        "CPU model": _cpu_model(),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": sys.version.split()[0],
        "Redis": _server_version("redis-server"),
        "memcached": _server_version("memcached"),
    }
    with psycopg.connect(POSTGRES) as connection:
        facts["PostgreSQL"] = connection.execute("SHOW server_version").fetchone()[0]
    for package in PACKAGES:
        try:
            facts[package] = version(package)
        except PackageNotFoundError:
            facts[package] = "not installed"
    return facts
