"""A value tasklock did not write, inside the prefix, is a foreign holder on every backend:
seen as held, never taken, never released by an owner check, and never a crash."""

import datetime
import os
import uuid

import pytest
import redis
from django.core.cache import caches
from django.db import connection
from pymemcache.client.base import Client

from tasklock import Lock, LockNotAcquired
from tasklock.backends import get_backend
from tasklock.conf import conf
from tasklock.values.holder import Holder

NOT_UTF8 = b"\xff\xfe\x80 not UTF-8"


def plant_with_cache_set(alias: str, name: str) -> None:
    """What an app does with its own cache: ``set`` (pickled by Django) inside the prefix."""
    caches[alias].set(f"{conf.KEY_PREFIX}:{name}", {"stats": [1, 2, 3]}, 60)


def plant_raw(alias: str, name: str) -> None:
    """Bytes that are no UTF-8 (text that is no JSON on the database), through the raw client."""
    key = get_backend(alias).key(name)
    if alias in ("default", "redis", "valkey"):
        host, port = address("TASKLOCK_TEST_REDIS")
        redis.Redis(host=host, port=port).set(key, NOT_UTF8, ex=60)
    elif alias == "memcached":
        Client(address("TASKLOCK_TEST_MEMCACHED")).set(key, NOT_UTF8, expire=60, noreply=False)
    else:
        expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=60)
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO tasklock_cache (cache_key, value, expires) VALUES (%s, %s, %s) "
                "ON CONFLICT (cache_key) DO UPDATE SET value = EXCLUDED.value, expires = EXCLUDED.expires",
                [key, "not json \ufffd {", expires],
            )


def address(variable: str) -> tuple[str, int]:
    """The harness's server in ``variable``, as (host, port)."""
    host, _, port = os.environ[variable].rpartition(":")
    return host, int(port)


PLANTS = {"cache.set": plant_with_cache_set, "raw": plant_raw}


@pytest.fixture(params=sorted(PLANTS))
def plant(request):
    return PLANTS[request.param]


@pytest.fixture
def name(lock_cache):
    name = f"foreign:{uuid.uuid4().hex}"
    yield name
    caches[lock_cache].delete(f"{conf.KEY_PREFIX}:{name}")


def test_a_foreign_value_is_a_foreign_holder(lock_cache, plant, name):
    plant(lock_cache, name)
    backend = get_backend(lock_cache)
    assert Holder.decode(backend.get(backend.key(name))) is None, "read, never decoded as a holder"
    other = Lock(name, timeout=10, cache=lock_cache)
    assert other.locked() is True
    assert other.owned() is False
    assert other.acquire() is False
    assert other.acquire(blocking=True, wait=0.05) is False
    assert other.release() is False
    with pytest.raises(LockNotAcquired), Lock(name, timeout=10, cache=lock_cache):
        pytest.fail("the body must not run")
    assert Lock(name, cache=lock_cache).locked(), "nobody deleted the foreign value"


def test_a_body_that_overwrote_its_lock_keeps_its_own_exception(lock_cache, plant, name):
    body_error = pytest.raises(RuntimeError, match="the body's own")
    with body_error, Lock(name, timeout=10, cache=lock_cache) as held:
        plant(lock_cache, name)  # the app's own value replaces the lock
        assert held.owned() is False
        assert held.extend() is False
        raise RuntimeError("the body's own")
    assert Lock(name, cache=lock_cache).locked(), "the release did not delete the foreign value"


@pytest.mark.parametrize(
    "raw",
    [None, b"", NOT_UTF8, "not json", "42", "[]", "{}", '{"token": 1}', "[" * 100_000, b"\x80\x04K*."],
)
def test_holder_decode_returns_none_for_anything_foreign(raw):
    assert Holder.decode(raw) is None


def test_holder_decode_reads_its_own_values():
    value = Holder.encode_here("t0k", "name", 1000.0, 30, "task", "id")
    holder = Holder.decode(value)
    assert holder is not None and holder.token == "t0k" and holder.expires_at == 1030.0
    assert Holder.decode(value.encode()) == holder
