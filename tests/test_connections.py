"""Adapters and their connections live and die with their thread (issue 17, item 4), and a
refused connection says why.

The worker's main process starts a thread per dead child and per expired or revoked unique
task; each took a lock and used to leave its adapter, its cache object and its connection
behind for ever (300 threads: 300 connections on memcached and Django's RedisCache).
"""

import gc
import uuid
import weakref

import pymemcache
import pytest
import redis
from django.core.cache import caches

from tasklock import Lock, LockError
from tasklock.backends import get_backend
from tests import servers
from tests.test_threads import run_threads
from tests.waiting import wait_until

THREADS = 300
#: threads started at once
BATCH = 30
#: memcached -c (one thread: -t 1, else it needs more descriptors than that to start)
CONNECTION_LIMIT = "20"


def in_threads(work, count: int) -> None:
    """``work(n)`` in ``count`` short-lived threads, ``BATCH`` at a time; fails on an error."""
    for start in range(0, count, BATCH):
        assert run_threads(lambda n, start=start: work(start + n), min(BATCH, count - start)) == []


def take_one(alias: str, name: str) -> None:
    held = Lock(name, timeout=10, cache=alias)
    assert held.acquire() and held.release()


def test_a_threads_adapter_and_cache_go_with_the_thread(lock_cache):
    left: list[weakref.ref] = []

    def work(number: int) -> None:
        take_one(lock_cache, f"threads:{uuid.uuid4().hex}")
        left.extend([weakref.ref(get_backend(lock_cache)), weakref.ref(caches[lock_cache])])

    in_threads(work, 50)
    # some cache objects are in reference cycles of their own (django-redis's cache and client)
    wait_until(lambda: gc.collect() >= 0 and all(ref() is None for ref in left), "the threads' adapters gone")


def memcached_connections(port: int) -> int:
    client = pymemcache.Client(("127.0.0.1", port))
    try:
        return int(client.stats()[b"curr_connections"])
    finally:
        client.close()


def redis_connections(port: int) -> int:
    client = redis.Redis(port=port)
    try:
        return len(client.client_list()) - 1  # not this one
    finally:
        client.close()


@pytest.fixture(params=["memcached", "Django's RedisCache"])
def own_server(request, settings):
    """A cache alias ``own`` on a server of its own, and how many connections it has now."""
    port = servers.free_port()
    if request.param == "memcached":
        server = servers.start_memcached(port)
        backend = "django.core.cache.backends.memcached.PyMemcacheCache"
        location, count = f"127.0.0.1:{port}", memcached_connections
    else:
        server = servers.start_redis_node(port)
        backend, location, count = (
            "django.core.cache.backends.redis.RedisCache",
            f"redis://127.0.0.1:{port}/0",
            redis_connections,
        )
    settings.CACHES = {**settings.CACHES, "own": {"BACKEND": backend, "LOCATION": location}}
    yield lambda: count(port)
    server.stop()


def test_short_lived_threads_leave_no_connections(own_server):
    take_one("own", f"threads:{uuid.uuid4().hex}")  # this thread's own connection, kept
    baseline = own_server()
    in_threads(lambda number: take_one("own", f"threads:{uuid.uuid4().hex}"), THREADS)
    # redis-py's connections are in reference cycles of their own: collected, not counted
    wait_until(lambda: gc.collect() >= 0 and own_server() <= baseline, f"connections back to {baseline}", 30)


def connected_from(port: int) -> bool:
    """Whether the harness's memcached has a connection from local port ``port`` (``stats conns``)."""
    client = pymemcache.Client(("127.0.0.1", servers.port_of("TASKLOCK_TEST_MEMCACHED")))
    try:
        return f"tcp:127.0.0.1:{port}".encode() in client.stats("conns").values()
    finally:
        client.close()


@pytest.mark.usefixtures("memcached_server")
def test_closing_the_cache_closes_tasklocks_own_client():
    """``caches.close_all()`` (Django's ``request_finished``, Celery's new pool child) closes
    tasklock's own memcached client with Django's."""
    take_one("memcached", f"close:{uuid.uuid4().hex}")
    port = get_backend("memcached").client.sock.getsockname()[1]
    assert connected_from(port)
    caches.close_all()
    wait_until(lambda: not connected_from(port), "tasklock's connection closed", 30)
    take_one("memcached", f"close:{uuid.uuid4().hex}")  # and it connects again


def test_memcached_at_its_connection_limit_says_so(settings):
    port = servers.free_port()
    server = servers.start_memcached(port, "-c", CONNECTION_LIMIT, "-t", "1")
    settings.CACHES = {
        **settings.CACHES,
        "limited": {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": f"127.0.0.1:{port}",
        },
    }
    taken = [pymemcache.Client(("127.0.0.1", port)) for _ in range(int(CONNECTION_LIMIT))]
    try:
        with pytest.raises(pymemcache.exceptions.MemcacheUnknownCommandError):
            for client in taken:  # take every connection memcached allows, and one more
                client.version()
        with pytest.raises(LockError, match="refused add: Too many open connections") as error:
            Lock(f"limit:{uuid.uuid4().hex}", timeout=10, cache="limited").acquire()
        assert f"server 127.0.0.1:{port}" in str(error.value)
    finally:
        for client in taken:
            client.close()
        server.stop()
