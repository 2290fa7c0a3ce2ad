"""The harness: real Redis and memcached on the ports the settings reserved, PostgreSQL
when it answers (always under CI), and a real prefork Celery worker on the Redis broker."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest
from django.db import connection

from tests import servers

#: the test worker's log level (its log is in a temp dir named in a failing test's output)
WORKER_LOGLEVEL = os.environ.get("TASKLOCK_TEST_WORKER_LOGLEVEL", "warning")


def _unavailable(message: str) -> None:
    if servers.IN_CI:
        pytest.fail(f"{message} (CI=true: a missing server is a failure)")
    pytest.skip(message)


def _started(what: str, start, *args):
    """``start(*args)``: a server or topology; a missing one fails under CI, else skips."""
    try:
        return start(*args)
    except servers.ServerUnavailable as exc:
        _unavailable(f"{what}: {exc}")


@pytest.fixture(scope="session")
def redis_server():
    server = _started("Redis", servers.start_redis, servers.port_of("TASKLOCK_TEST_REDIS"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster():
    """A 3-primary Redis Cluster on the ports in ``TASKLOCK_TEST_CLUSTER``."""
    ports = servers.ports_of("TASKLOCK_TEST_CLUSTER")
    topology = _started("Redis Cluster", servers.start_redis_cluster, ports)
    yield topology
    topology.stop()


@pytest.fixture(scope="session")
def redis_sentinel():
    """A primary, its replica and a sentinel on the ports in ``TASKLOCK_TEST_SENTINEL``."""
    ports = servers.ports_of("TASKLOCK_TEST_SENTINEL")
    topology = _started("Redis Sentinel", servers.start_sentinel_group, ports)
    yield topology
    topology.stop()


#: the cluster caches: django-redis and Django's RedisCache with tasklock.contrib's clients,
#: and django-valkey's cluster backend
CLUSTER_CACHES = ["cluster", "django_cluster", "valkey_cluster"]


@pytest.fixture(params=CLUSTER_CACHES)
def cluster_cache(request, redis_cluster):
    """Each cluster cache in turn, on the harness's 3-primary cluster."""
    return request.param


@pytest.fixture(scope="session")
def memcached_server():
    server = _started("memcached", servers.start_memcached, servers.port_of("TASKLOCK_TEST_MEMCACHED"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    """The test database, named in the environment so subprocesses use it too."""
    os.environ["TASKLOCK_TEST_DB_NAME"] = connection.settings_dict["NAME"]
    yield


@pytest.fixture
def database_cache(request):
    """The DatabaseCache on PostgreSQL (SQLite only outside CI: it cannot show races).

    Outside a transaction: inside ``atomic()`` a lock is invisible to other processes."""
    request.node.add_marker(pytest.mark.django_db(transaction=True))
    request.getfixturevalue("transactional_db")
    if connection.vendor != "postgresql":
        _unavailable("PostgreSQL does not answer on 127.0.0.1:5432")
    return "database"


@pytest.fixture(params=["default", "redis", "valkey", "memcached", "database"])
def lock_cache(request):
    """Each supported backend in turn: django-redis, Django's RedisCache, django-valkey,
    memcached, database."""
    return serving(request, request.param)


def serving(request, alias: str) -> str:
    """``alias``, once the server behind that test cache runs (a fixture's ``request``)."""
    if alias in ("default", "redis", "valkey"):
        request.getfixturevalue("redis_server")
    elif alias == "memcached":
        request.getfixturevalue("memcached_server")
    else:
        request.getfixturevalue("database_cache")
    return alias


@pytest.fixture(scope="session")
def celery_worker(redis_server, django_db_setup):
    """A real worker: prefork pool, 4 processes, on the harness's Redis broker."""
    log_path = os.path.join(tempfile.mkdtemp(prefix="tasklock-worker-"), "worker.log")
    log = open(log_path, "w")  # noqa: SIM115 - the worker writes to it for the whole session
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker", "--pool=prefork",
         "--concurrency=4", "--queues=tasklock-tests", "--without-gossip", "--without-mingle",
         "--without-heartbeat", f"--loglevel={WORKER_LOGLEVEL}", f"--hostname=tests-{os.getpid()}@%h"],
        stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(),
    )  # fmt: skip
    from tests.tasks import ping
    from tests.waiting import wait_until

    answer = ping.delay()
    try:  # a worker that dies on startup fails the wait at once, not after the deadline
        wait_until(lambda: answer.ready() or process.poll() is not None, "the worker answers a ping", 120)
        assert process.poll() is None, f"the worker exited with {process.returncode}"
        assert answer.get(timeout=1) == "pong"
    except Exception:
        process.kill()
        with open(log_path) as written:
            print(written.read(), file=sys.stderr)
        raise
    yield process
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def pytest_collection_modifyitems(items):
    """Mark database-cache tests at collection (the "database" case of a parametrised cache
    fixture, or ``database_cache`` itself): pytest-django creates the test database for the
    marks it sees when ``django_db_setup`` first runs, and the Celery worker's fixture can run
    it before any ``database_cache`` fixture has added its mark at run time."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_database = callspec is not None and "database" in callspec.params.values()
        if on_database or "database_cache" in item.fixturenames:
            item.add_marker(pytest.mark.django_db(transaction=True))


@pytest.fixture(scope="session")
def db_workers(redis_server, django_db_setup):
    """Two real ``django-tasks-db`` workers (issue 21) on PostgreSQL, the test database."""
    from tests.db_workers import start_db_worker

    if connection.vendor != "postgresql":
        _unavailable("PostgreSQL does not answer on 127.0.0.1:5432 (db_worker runs on it)")
    workers = [start_db_worker(), start_db_worker()]
    yield workers
    for worker in workers:
        worker.stop()


@pytest.fixture(params=["sync", "async"])
def face(request):
    """Each face of a Lock in turn: the sync methods, the async ones (issue 20)."""
    from tests.faces import FACES

    made = FACES[request.param]()
    yield made
    made.close()
