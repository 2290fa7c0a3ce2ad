"""Sentinel (a primary, its replica, a sentinel) and ``TASKLOCK["REPLICAS"]``: an acquire counts
only when ``WAIT`` confirms the replicas have it; a failover under contention."""

import itertools
import os
import subprocess
import sys
import threading
import time
import uuid

import pytest
import redis
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured

from tasklock import Lock, LockError
from tasklock.backends import get_backend
from tasklock.conf import conf
from tasklock.integrations.uniqueness import QueueLock, claim, hand_over
from tests import tasks, unique_tasks
from tests.servers import SENTINEL_SERVICE, redis_cli, wait_until
from tests.test_celery import intervals
from tests.test_checks import messages
from tests.test_unique import events

SENTINEL_CACHES = ["sentinel", "django_sentinel"]


@pytest.fixture(params=SENTINEL_CACHES)
def sentinel_cache(request, redis_sentinel):
    return request.param


def primary_port(topology) -> int:
    reply = redis_cli(topology.ports[2], "sentinel", "get-master-addr-by-name", SENTINEL_SERVICE)
    return int(reply.split()[1])


def replica_linked(port: int) -> bool:
    return "master_link_status:up" in redis_cli(port, "info", "replication")


@pytest.mark.parametrize(
    "key, value",
    [("REPLICAS", -1), ("REPLICAS", 1.0), ("REPLICAS", True), ("REPLICAS", "1"), ("REPLICA_TIMEOUT", 0),
     ("REPLICA_TIMEOUT", -0.1), ("REPLICA_TIMEOUT", float("nan")), ("REPLICA_TIMEOUT", "1")],
)  # fmt: skip
def test_bad_replica_settings_are_e003(settings, key, value):
    settings.TASKLOCK = {key: value}
    found = messages()
    assert list(found) == ["tasklock.E003"] and f'TASKLOCK["{key}"]' in found["tasklock.E003"][0]
    with pytest.raises(ImproperlyConfigured, match=key):
        getattr(conf, key)


def test_replica_settings_defaults(settings):
    settings.TASKLOCK = {}
    assert (conf.REPLICAS, conf.REPLICA_TIMEOUT) == (0, 0.1)


def test_sentinel_caches_lock(sentinel_cache):
    held = Lock("sentinel:plain", timeout=5, cache=sentinel_cache)
    assert held.acquire() and held.owned() and isinstance(held.fencing_token, int)
    assert not Lock("sentinel:plain", cache=sentinel_cache).acquire()
    assert "sentinel service 'tasklock'" in get_backend(sentinel_cache).server(held._key)
    assert held.release()


def test_replicas_confirm_an_acquire(settings, sentinel_cache):
    settings.TASKLOCK = {"REPLICAS": 1, "REPLICA_TIMEOUT": 1}
    held = Lock("sentinel:confirmed", timeout=5, cache=sentinel_cache)
    assert held.acquire() and isinstance(held.fencing_token, int)
    assert not Lock("sentinel:confirmed", cache=sentinel_cache).acquire()
    assert held.release()


def test_replicas_confirm_each_slot_of_a_limited_name(settings, sentinel_cache):
    settings.TASKLOCK = {"REPLICAS": 1, "REPLICA_TIMEOUT": 1}
    holders = [Lock("sentinel:limited", timeout=5, cache=sentinel_cache, limit=2) for _ in range(3)]
    assert [each.acquire() for each in holders] == [True, True, False]
    assert all(isinstance(each.fencing_token, int) for each in holders[:2])
    assert holders[0].release() and holders[1].release()


def test_too_few_replicas_fail_a_slot_closed(settings, lock_cache_redis):
    """A slot the replicas did not confirm is freed, and the other holder keeps its own."""
    other = Lock("lonely-slots", timeout=5, cache=lock_cache_redis, limit=2)
    assert other.acquire()
    settings.TASKLOCK = {"REPLICAS": 1, "REPLICA_TIMEOUT": 0.05}
    held = Lock("lonely-slots", timeout=5, cache=lock_cache_redis, limit=2)
    with pytest.raises(LockError, match="0 of 1 replicas"):
        held.acquire()
    settings.TASKLOCK = {}
    assert not held and other.owned()
    again = Lock("lonely-slots", timeout=5, cache=lock_cache_redis, limit=2)
    assert again.acquire(), "the unconfirmed slot was freed"
    assert again.release() and other.release()


def test_too_few_replicas_fail_closed(settings, lock_cache_redis):
    """A primary without the replicas asked for: the lock is taken back and LockError raised."""
    settings.TASKLOCK = {"REPLICAS": 1, "REPLICA_TIMEOUT": 0.05}
    held = Lock("lonely", timeout=5, cache=lock_cache_redis)
    with pytest.raises(LockError, match="0 of 1 replicas"):
        held.acquire()
    assert not held and not held.locked(), "the unconfirmed lock was released"
    settings.TASKLOCK = {}
    again = Lock("lonely", timeout=5, cache=lock_cache_redis)
    assert again.acquire() and again.release()


@pytest.fixture(params=["default", "redis", "valkey"])
def lock_cache_redis(request, redis_server):
    """A Redis without replicas, through django-redis, Django's RedisCache and django-valkey."""
    return request.param


def test_w009_more_replicas_than_the_primary_has(settings, redis_sentinel):
    settings.TASKLOCK = {"CACHE": "sentinel", "REPLICAS": 1}
    assert "tasklock.W009" not in messages(deploy=True)
    settings.TASKLOCK = {"CACHE": "sentinel", "REPLICAS": 2}
    found = messages(deploy=True)["tasklock.W009"]
    assert len(found) == 1 and "reports 1 connected replica" in found[0]
    assert "tasklock.W009" not in messages(), "a deploy check"


def test_the_stale_side_fails_closed_with_replicas(settings, redis_sentinel):
    """A primary cut off from its sentinel and replicas (here: the replica made a primary of
    its own, as an old primary is during a partition) takes writes without an error. Without
    REPLICAS a process there gets a lock someone else holds; with REPLICAS=1 it fails closed."""
    primary = primary_port(redis_sentinel)
    stale = next(port for port in redis_sentinel.ports[:2] if port != primary)
    settings.CACHES = {
        **settings.CACHES,
        "stale": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": f"redis://127.0.0.1:{stale}/0"},
    }
    settings.TASKLOCK = {"REPLICAS": 1, "REPLICA_TIMEOUT": 1}
    holder = Lock("split:brain", timeout=30, cache="sentinel")
    assert holder.acquire(), "confirmed by the replica"
    redis.Redis(port=stale).replicaof("NO", "ONE")  # the partition: it takes writes on its own
    try:
        assert not Lock("split:brain", cache="stale").acquire(), "the lock had reached it: held there too"
        redis.Redis(port=stale).delete(holder._key)  # as if the holder's lock had not reached it
        with pytest.raises(LockError, match="0 of 1 replicas"):
            Lock("split:brain", timeout=30, cache="stale").acquire()
        assert not redis.Redis(port=stale).exists(holder._key), "taken back"
        settings.TASKLOCK = {"REPLICAS": 0}
        second = Lock("split:brain", timeout=30, cache="stale")
        assert second.acquire(), "without REPLICAS the stale side hands out a held lock"
        assert holder.owned() and second.owned()
    finally:
        redis.Redis(port=stale).replicaof("127.0.0.1", primary)
        wait_until(lambda: replica_linked(stale), "the replica linking back")
        holder.release()


def test_sentinel_failover_under_contention(settings, sentinel_cache, redis_sentinel):
    """Threads take and release one lock while SENTINEL FAILOVER swaps primary and replica.
    What a user gets: LockError for calls caught in the switch (the demoted primary answers
    READONLY, connections drop), never two holders at once; then locks on the new primary."""
    settings.TASKLOCK = {"REPLICAS": 1, "REPLICA_TIMEOUT": 0.5}
    before = primary_port(redis_sentinel)
    spans: list[tuple[float, float]] = []
    errors: list[str] = []
    stop = threading.Event()

    def contend() -> None:
        while not stop.is_set():
            held = Lock("failover", timeout=5, cache=sentinel_cache)
            try:
                if held.acquire(blocking=True, wait=0.5):
                    began = time.monotonic()
                    time.sleep(0.002)
                    spans.append((began, time.monotonic()))
                    held.release()
            except LockError as exc:
                errors.append(str(exc))
                time.sleep(0.02)

    threads = [threading.Thread(target=contend) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(spans) > 20, "locks taken before the failover")
        redis_cli(redis_sentinel.ports[2], "sentinel", "failover", SENTINEL_SERVICE)
        wait_until(lambda: primary_port(redis_sentinel) != before, "the failover")
        switched, count = time.monotonic(), len(spans)
        wait_until(lambda: len(spans) > count + 20 and spans[-1][0] > switched + 0.5, "locks after it", 60)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        caches[sentinel_cache].close()
    wait_until(lambda: replica_linked(before), "the old primary replicating the new one")
    ordered = sorted(spans)
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(ordered)), "two holders"
    print(f"{sentinel_cache}: {len(spans)} locks, {len(errors)} LockErrors during the failover: {errors[:3]}")


@pytest.mark.parametrize("cache", ["memcached", "database"])
def test_replicas_on_a_cache_without_replicas_is_e003(settings, cache):
    settings.TASKLOCK = {"CACHE": cache, "REPLICAS": 1}
    found = messages()["tasklock.E003"]
    assert len(found) == 1 and "TASKLOCK['REPLICAS'] is 1" in found[0] and f"{cache!r} is {cache}" in found[0]
    settings.TASKLOCK = {"CACHE": cache}
    assert "tasklock.E003" not in messages()
    settings.TASKLOCK = {"CACHE": "default", "REPLICAS": 1}
    assert "tasklock.E003" not in messages(), "Redis confirms with WAIT"


@pytest.mark.parametrize("mode", ["until_executed", "until_and_while_executing"])
def test_too_few_replicas_fail_the_start_of_a_unique_task_closed(settings, lock_cache_redis, mode):
    """The start's claim / hand-over of a queued task is confirmed like an acquire: with too few
    replicas it takes nothing, frees the queue lock it converted, and raises LockError."""
    name = f"unique:{uuid.uuid4().hex}"
    queue_name = name + ":queued" if mode == "until_and_while_executing" else name
    assert QueueLock(queue_name, lock_cache_redis, 30, "tests.t", "mine").take() == (True, None)
    settings.TASKLOCK = {"REPLICAS": 1, "REPLICA_TIMEOUT": 0.05}
    run = Lock(name, timeout=5, cache=lock_cache_redis)
    with pytest.raises(LockError, match="0 of 1 replicas"):
        claim(run, "mine") if mode == "until_executed" else hand_over(run, queue_name, "mine")
    assert not run and not run.locked(), "the unconfirmed run lock was released"
    backend = get_backend(lock_cache_redis)
    assert backend.get(backend.key(queue_name)) is None


def test_too_few_replicas_fail_the_start_of_a_unique_task_on_a_cluster(settings, cluster_cache):
    """On a cluster the start converts the queue lock in place (no script over both keys): that
    step is confirmed too."""
    name = f"unique:{uuid.uuid4().hex}"
    assert QueueLock(name, cluster_cache, 30, "tests.t", "mine").take() == (True, None)
    settings.TASKLOCK = {"REPLICAS": 1, "REPLICA_TIMEOUT": 0.05}
    run = Lock(name, timeout=5, cache=cluster_cache)
    with pytest.raises(LockError, match="0 of 1 replicas"):
        claim(run, "mine")
    assert not run.locked(), "the unconfirmed run lock was released"


def test_too_few_replicas_fail_a_unique_publish_closed(settings, lock_cache_redis):
    """The queue lock is confirmed too: an until_executing task (whose body runs unlocked) is
    not published when its queue lock could be lost."""
    name = f"unique:{uuid.uuid4().hex}"
    settings.TASKLOCK = {"REPLICAS": 1, "REPLICA_TIMEOUT": 0.05}
    with pytest.raises(LockError, match="0 of 1 replicas"):
        QueueLock(name, lock_cache_redis, 30, "tests.t", "mine").take()
    assert not Lock(name, cache=lock_cache_redis).locked(), "the unconfirmed queue lock was released"
    item = uuid.uuid4().hex
    with pytest.raises(LockError, match="0 of 1 replicas"):
        unique_tasks.rebuild_once_started.delay(item, "", 0)
    assert not Lock(f"{unique_tasks.rebuild_once_started.name}:{item}").locked()


def test_a_worker_with_too_few_replicas_runs_no_unique_body(redis_server, tmp_path):
    """A real prefork worker with REPLICAS=1 and no replica: tasks queued (by a publisher that
    asks no replica) fail with LockError at their start, their bodies never run, no lock is
    left; a plain locked task there fails closed the same way."""
    queue = f"tasklock-replicas-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings_replicas"}
    item, run_id = uuid.uuid4().hex, uuid.uuid4().hex
    with open(tmp_path / "worker.log", "w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker", "--pool=prefork",
             "--concurrency=2", f"--queues={queue}", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "--loglevel=warning", f"--hostname={queue}@%h"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        try:
            results = [
                unique_tasks.rebuild.apply_async((item, run_id), queue=queue),
                unique_tasks.rebuild_both.apply_async((item, run_id, 0), queue=queue),
                tasks.update_game.apply_async((int(time.time() * 1000), run_id, 0), queue=queue),
            ]
            for result in results:
                with pytest.raises(LockError, match="0 of 1 replicas"):
                    result.get(timeout=60)
        finally:
            worker.terminate()
            worker.wait(30)
    assert events(run_id) == [] and intervals(run_id) == [], "a body ran"
    for task in (unique_tasks.rebuild, unique_tasks.rebuild_both):
        for suffix in ("", ":queued"):
            assert not Lock(f"{task.name}:{item}{suffix}").locked()
