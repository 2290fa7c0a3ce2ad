"""Fencing tokens: issued with the acquisition, strictly increasing in grant order."""

import itertools
import uuid

import pytest

from tasklock import Lock
from tests.test_contention import contend, overlaps


@pytest.fixture(params=["default", "redis", "database"])
def fencing_cache(request):
    """The backends that fence: django-redis, Django's RedisCache and the database cache."""
    if request.param == "database":
        return request.getfixturevalue("database_cache")
    request.getfixturevalue("redis_server")
    return request.param


def test_tokens_grow_with_every_acquire_of_any_name(fencing_cache):
    tokens = []
    for name in ("fence:a", "fence:b", "fence:a", f"fence:{uuid.uuid4().hex}"):
        held = Lock(name, timeout=10, cache=fencing_cache)
        assert held.fencing_token is None
        assert held.acquire()
        tokens.append(held.fencing_token)
        assert held.extend() and held.fencing_token == tokens[-1], "extend keeps the token"
        held.release()
    assert all(isinstance(t, int) for t in tokens)
    assert tokens == sorted(set(tokens))


def test_a_refused_acquire_hands_out_nothing(fencing_cache):
    held = Lock(f"fence:{uuid.uuid4().hex}", timeout=10, cache=fencing_cache)
    assert held.acquire()
    other = Lock(held.name, timeout=10, cache=fencing_cache)
    assert not other.acquire() and other.fencing_token is None
    held.release()


def test_memcached_has_no_tokens(memcached_server):
    held = Lock(f"fence:{uuid.uuid4().hex}", timeout=10, cache="memcached")
    assert held.acquire()
    assert held.fencing_token is None
    held.release()


def test_tokens_survive_a_lost_counter(redis_server):
    """The counter key gone (restart without persistence, eviction): tokens still grow."""
    from tasklock.backends import get_backend

    first = Lock(f"fence:{uuid.uuid4().hex}", timeout=10)
    assert first.acquire()
    backend = get_backend()
    backend.client.delete(backend.fence_key())
    second = Lock(f"fence:{uuid.uuid4().hex}", timeout=10)
    assert second.acquire()
    assert second.fencing_token > first.fencing_token
    first.release(), second.release()


def test_tokens_increase_in_grant_order_across_processes(fencing_cache, tmp_path):
    per_process = contend(tmp_path, fencing_cache, seconds=2.0, hold=0.002)
    grants = sorted(span for spans in per_process for span in spans)
    assert overlaps(per_process) == 0
    assert len(grants) >= 5 and sum(1 for spans in per_process if spans) >= 2
    tokens = [token for _, _, token in grants]
    assert all(isinstance(t, int) for t in tokens)
    assert all(a < b for a, b in itertools.pairwise(tokens)), "tokens in grant order"
