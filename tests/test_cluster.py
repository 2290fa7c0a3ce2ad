"""Redis Cluster (3 primaries) through django-redis and Django's RedisCache with
tasklock.contrib's cluster clients, and through django-valkey's cluster backend."""

import threading

import pytest
import redis
from django.core.management import call_command
from redis.cluster import RedisCluster
from redis.crc import key_slot

import tasklock
from tasklock import Lock, LockError
from tasklock.backends import get_backend
from tasklock.values.holder import Holder
from tests.test_checks import messages
from tests.test_contention import CONTENDERS, contend, overlaps
from tests.waiting import wait_until

#: names whose keys hold braces: a hash tag of their own, an empty one, an unclosed one
BRACED = ["plain", "a{b}c", "x{}y", "open{", "}{z}", "{whole}"]


@pytest.fixture
def cluster(redis_cluster):
    """A redis-py cluster client on the harness cluster; tasklock's keys removed afterwards."""
    client = RedisCluster(host="127.0.0.1", port=redis_cluster.ports[0])
    yield client
    for node in client.get_primaries():
        plain = client.get_redis_connection(node)
        for key in plain.scan_iter(match="*tasklock*"):
            plain.delete(key)
    client.close()


def test_lock_semantics(cluster_cache, cluster):
    for number in range(30):  # keys on every primary
        held = Lock(f"report:{number}", timeout=5, cache=cluster_cache)
        assert held.acquire()
        assert held.owned() and held.locked()
        assert held.fencing_token is None, "no fencing tokens on a cluster (see redis_cluster.py)"
        other = Lock(f"report:{number}", timeout=5, cache=cluster_cache)
        assert not other.acquire()
        assert not other.release() and not other.extend()
        assert held.extend(10)
        assert 5 < cluster.pttl(held._key) / 1000 <= 10
        assert held.release()
        assert not held.locked() and not held.release()


@pytest.mark.parametrize("name", BRACED)
def test_companion_keys_share_the_lock_keys_slot(cluster_cache, cluster, name):
    backend = get_backend(cluster_cache)
    key, *companions = backend.companions(backend.key(name))
    assert {key_slot(k.encode()) for k in companions} == {key_slot(key.encode())}
    assert [c.partition("}")[2] for c in companions] == [key + " line", key + " tickets"]


@pytest.mark.parametrize("name", BRACED)
@pytest.mark.parametrize("fair", [False, True])
def test_a_release_hands_the_lock_to_a_waiter_in_line(cluster_cache, cluster, name, fair):
    """The line scripts' keys, declared and computed (a waiter's grant list), are in one slot
    (no CROSSSLOT), and the release itself gives the lock to the waiter."""
    held = Lock(name, timeout=30, cache=cluster_cache)
    assert held.acquire()
    tickets = get_backend(cluster_cache).companions(held._key)[2]
    waiter = Lock(name, timeout=30, cache=cluster_cache, fair=fair)
    got = []
    thread = threading.Thread(target=lambda: got.append(waiter.acquire(blocking=True, wait=10)))
    thread.start()
    wait_until(lambda: cluster.hexists(tickets, waiter.token), "the waiter joins the line")
    assert held.release()
    assert Holder.decode(cluster.get(held._key)).token == waiter.token, "handed over by the release"
    thread.join(15)
    assert got == [True] and waiter.owned() and waiter.fencing_token is None
    assert waiter.release()


def test_mutual_exclusion_across_processes(cluster_cache, tmp_path):
    per_process = contend(tmp_path, cluster_cache)
    assert sum(1 for spans in per_process if spans) >= 2, "the lock must change hands"
    assert overlaps(per_process) == 0
    assert len(per_process) == CONTENDERS


def test_listing_and_clearing_cover_every_primary(cluster_cache, cluster):
    names = [f"spread:{number}" for number in range(60)]
    held = [Lock(name, timeout=30, cache=cluster_cache) for name in names]
    assert all(lock.acquire() for lock in held)
    nodes = {cluster.get_node_from_key(lock._key).name for lock in held}
    assert len(nodes) == 3, "the locks are spread over the 3 primaries"

    listed = {info.name: info for info in tasklock.held_locks(cache=cluster_cache)}
    assert set(listed) == set(names)
    assert all(info.state == "running" and 0 < info.expires_in <= 30 for info in listed.values())
    assert {i.name for i in tasklock.held_locks("spread:1*", cache=cluster_cache)} == {
        n for n in names if n.startswith("spread:1")
    }

    removed = tasklock.clear("spread:7", cache=cluster_cache)
    assert removed is not None and removed.name == "spread:7" and removed.holder == listed["spread:7"].holder
    assert tasklock.clear("spread:7", cache=cluster_cache) is None
    call_command("locks", "clear", "--all", "--yes", "--cache", cluster_cache)
    assert list(tasklock.held_locks(cache=cluster_cache)) == []
    assert not any(lock.release() for lock in held)


def test_a_plain_client_on_a_cluster_node_is_w009(settings, redis_cluster):
    from django.core.checks import run_checks

    port = redis_cluster.ports[0]
    settings.CACHES = {
        **settings.CACHES,
        "plain_on_cluster": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}",
        },
    }
    settings.TASKLOCK = {"CACHE": "plain_on_cluster"}
    found = [m for m in run_checks(include_deployment_checks=True) if m.id == "tasklock.W009"]
    assert len(found) == 1 and "cluster node" in found[0].msg
    settings.TASKLOCK = {"CACHE": "cluster"}
    assert not [m for m in run_checks(include_deployment_checks=True) if m.id == "tasklock.W009"]


def test_cluster_errors_are_lock_errors(settings, redis_server):
    """A cluster client that reaches no cluster raises RedisClusterException (no RedisError)."""
    settings.CACHES = {
        **settings.CACHES,
        "cluster_nowhere": {
            "BACKEND": "tasklock.contrib.redis_cluster.RedisClusterCache",
            "LOCATION": f"redis://127.0.0.1:{redis_server.port}",  # a plain server: no cluster
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        },
    }
    with pytest.raises(LockError) as raised:
        Lock("anything", cache="cluster_nowhere").acquire()
    assert not isinstance(raised.value.__cause__, redis.RedisError)
    with pytest.raises(LockError):
        list(tasklock.held_locks(cache="cluster_nowhere"))


def test_deploy_checks_on_a_cluster(settings, cluster_cache):
    settings.TASKLOCK = {"CACHE": cluster_cache}
    assert messages(deploy=True) == {}
    settings.TASKLOCK = {"CACHE": cluster_cache, "REPLICAS": 1}
    found = messages(deploy=True)["tasklock.W009"]
    assert len(found) == 3 and all("0 connected replica" in msg for msg in found), "one per primary"


def test_replicas_on_a_cluster_without_replicas_fail_closed(settings, cluster_cache, cluster):
    """``SET`` + ``WAIT`` go to the primary of the key's slot; none has a replica here."""
    settings.TASKLOCK = {"REPLICAS": 1, "REPLICA_TIMEOUT": 0.05}
    for number in range(6):
        held = Lock(f"confirmed:{number}", timeout=5, cache=cluster_cache)
        with pytest.raises(LockError, match="0 of 1 replicas") as raised:
            held.acquire()
        assert f"cluster node 127.0.0.1:{cluster.get_node_from_key(held._key).port}" in str(raised.value)
        assert not held.locked(), "the unconfirmed lock was released"


def test_every_slot_has_a_tag_that_hashes_to_it():
    from tasklock.backends.redis_cluster import slot_tags

    tags = slot_tags()
    assert len(tags) == 16384
    assert all(key_slot(f"{{{tag}}}:1:tasklock:x{{y wake".encode()) == slot for slot, tag in enumerate(tags))
