"""Waiting in line on Redis: a release hands the lock to the first live waiter; ``fair`` keeps
newcomers from barging in; dead and departed waiters lose their place; no grant is lost."""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
import redis

from tasklock import Lock, LockError, task_lock
from tasklock.backends import get_backend
from tasklock.backends.redis_line import TICKET_SLACK_MS, giving_up_place
from tasklock.core.drivers import drive
from tasklock.values.calls import Attempt
from tasklock.values.holder import Holder
from tests.waiting import wait_until

REDIS_CACHES = ["default", "redis", "valkey"]


def unique(prefix: str = "line") -> str:
    return f"{prefix}:{uuid.uuid4().hex}"


@pytest.fixture(params=REDIS_CACHES)
def alias(request, redis_server):
    return request.param


@pytest.fixture
def client(redis_server):
    return redis.Redis(port=redis_server.port)


def tickets_of(lock: Lock) -> str:
    return get_backend(lock.cache_alias).companions(lock._key)[2]


def holder_token(client, lock: Lock) -> str | None:
    holder = Holder.decode(client.get(lock._key))
    return holder and holder.token


def waiter_process(alias: str, name: str, hold: float, fair: bool) -> tuple[subprocess.Popen, str]:
    """A ``tests.line_waiter`` process, and its token once it has printed it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.line_waiter", alias, name, str(hold), *(["--fair"] if fair else [])],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    word, token = process.stdout.readline().split()
    assert word == "token"
    return process, token


def join_line(lock: Lock, stay: float = 5.0):
    """``lock`` joins its line for ``stay`` seconds without blocking (what a waiter does first)."""
    value = Holder.here(lock.token, lock.name, time.time(), lock.timeout).encode()
    return get_backend(lock.cache_alias).take_or_queue(
        lock._key, value, lock.timeout, lock.token, stay, lock.fair
    )


@pytest.mark.parametrize("fair", [False, True])
def test_waiters_in_line_get_the_lock_in_arrival_order(alias, client, fair):
    """Four processes join the line one after another; the release starts a chain of handovers
    that serves them in that order."""
    name = unique()
    held = Lock(name, timeout=30, cache=alias)
    assert held.acquire()
    waiters = []
    for _ in range(4):
        process, token = waiter_process(alias, name, 0.05, fair)
        wait_until(lambda: client.hexists(tickets_of(held), token), "the waiter joins the line")  # noqa: B023
        waiters.append((process, token))
    assert client.lrange(get_backend(alias).companions(held._key)[1], 0, -1) == [
        token.encode() for _, token in waiters
    ]
    assert held.release()
    got = []
    for process, token in waiters:
        word, at = process.stdout.readline().split()
        assert word == "acquired" and process.wait(60) == 0
        got.append((float(at), token))
    assert [token for _, token in sorted(got)] == [token for _, token in waiters]
    assert not client.exists(held._key)


def test_fair_keeps_a_newcomer_from_taking_a_lock_freed_by_expiry(alias, client):
    """A lock that expires (its holder died) while someone waits in line is free for a moment:
    an unfair newcomer takes it; a fair one leaves it to the first live waiter."""
    name = unique()
    assert Lock(name, timeout=0.3, cache=alias).acquire()  # a holder that never releases
    waiter = Lock(name, timeout=30, cache=alias, fair=True)
    assert not join_line(waiter).fence
    wait_until(lambda: not client.exists(waiter._key), "the dead holder's lock expires")
    assert not Lock(name, timeout=30, cache=alias, fair=True).acquire(), "a fair newcomer waits its turn"
    assert not client.exists(waiter._key)
    assert join_line(waiter).fence, "the first in line takes it"
    assert holder_token(client, waiter) == waiter.token
    client.delete(waiter._key)

    assert Lock(name, timeout=0.3, cache=alias).acquire()
    behind = Lock(name, timeout=30, cache=alias)
    assert not join_line(behind).fence
    wait_until(lambda: not client.exists(behind._key), "the lock expires")
    barging = Lock(name, timeout=30, cache=alias)
    assert barging.acquire(), "an unfair newcomer takes a free lock, line or not"
    assert barging.release()
    assert holder_token(client, barging) == behind.token, "and its release serves the line"
    client.delete(behind._key)


def test_a_dead_waiter_loses_its_place_and_never_gets_the_lock(alias, client):
    """A waiter killed in line keeps its ticket only until the ticket is stale (at most
    MAX_BLOCK + TICKET_SLACK_MS after it last renewed it); the release then skips it."""
    name = unique()
    held = Lock(name, timeout=30, cache=alias)
    assert held.acquire()
    process, dead = waiter_process(alias, name, 0, fair=True)
    tickets = tickets_of(held)
    wait_until(lambda: client.hexists(tickets, dead), "the doomed waiter joins the line")
    behind = Lock(name, timeout=30, cache=alias, fair=True)
    assert not join_line(behind, stay=30).fence
    process.send_signal(signal.SIGKILL)
    process.wait(30)

    def stale() -> bool:
        ticket = client.hget(tickets, dead)
        seconds, micros = client.time()
        return int(ticket.split()[0]) < seconds * 1000 + micros // 1000

    wait_until(stale, "the dead waiter's ticket goes stale", seconds=2 + TICKET_SLACK_MS / 1000)
    assert held.release()
    assert holder_token(client, held) == behind.token, "the live waiter behind it got the lock"
    assert not client.hexists(tickets, dead) and not client.exists(f"{tickets} {dead}")
    turn = join_line(behind)
    assert turn.fence and Holder.decode(turn.value).token == behind.token
    client.delete(behind._key)


def test_a_waiter_that_gives_up_leaves_the_line(alias, client):
    name = unique()
    held = Lock(name, timeout=30, cache=alias)
    assert held.acquire()
    waiter = Lock(name, timeout=30, cache=alias, fair=True)
    started = time.monotonic()
    assert not waiter.acquire(blocking=True, wait=0.3)
    assert time.monotonic() - started >= 0.3
    assert not client.exists(tickets_of(held)), "its ticket is gone"
    assert held.release()
    assert not client.exists(held._key), "nobody was left to hand the lock to"


class Interrupted(Exception):
    """What a soft time limit or a signal handler raises in a blocked waiter."""


def test_a_waiter_interrupted_while_blocked_leaves_the_line(alias, client):
    """An exception in the middle of the BLPOP (Celery's SoftTimeLimitExceeded comes this way)
    takes the waiter out of the line at once, so no release hands it a lock it would never use."""
    name = unique()
    held = Lock(name, timeout=30, cache=alias)
    assert held.acquire()
    waiter = Lock(name, timeout=30, cache=alias)

    def interrupt(signum, frame):
        assert client.hexists(tickets_of(held), waiter.token), "interrupted while in line"
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    try:
        with pytest.raises(Interrupted):
            waiter.acquire(blocking=True, wait=10)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not waiter and not client.exists(tickets_of(held)), "its place is given up"
    assert held.release()
    assert not client.exists(held._key), "nobody left to hand the lock to"


def test_a_grant_whose_reply_an_interrupt_cut_off_is_passed_on(alias, client):
    """The server popped the grant for the BLPOP, but the interrupt came before the reply was
    read: the lock holds the waiter's token and no list says so. Giving up its place finds
    that and frees the lock, instead of leaving it held by nobody until its TTL."""
    name = unique()
    held = Lock(name, timeout=30, cache=alias)
    assert held.acquire()
    waiter = Lock(name, timeout=30, cache=alias)
    assert not join_line(waiter).fence
    assert held.release()
    assert client.lpop(f"{tickets_of(held)} {waiter.token}"), "popped, as for a BLPOP whose reply was lost"
    assert holder_token(client, waiter) == waiter.token
    attempt = Attempt(waiter._key, waiter.token, name, 30, None, None, True, 0.0, False)
    drive(giving_up_place(attempt), get_backend(alias), waiter._failed)
    assert not client.exists(waiter._key)


def test_no_grant_is_lost(alias, client):
    """A grant pushed while its waiter was not blocked is found by its next look, or by its
    leaving the line: either way the lock is the waiter's, never orphaned."""
    name = unique()
    held = Lock(name, timeout=30, cache=alias)
    assert held.acquire()
    first, second = (Lock(name, timeout=30, cache=alias) for _ in range(2))
    assert not join_line(first).fence and not join_line(second).fence
    assert held.release()
    turn = join_line(first)  # its next look, after a BLPOP that saw nothing
    assert turn.fence > held.fencing_token and Holder.decode(turn.value).token == first.token
    backend = get_backend(alias)
    assert backend.delete_if(first._key, turn.value), "its release hands the lock on"
    turn = backend.leave(second._key, second.token, 30)  # giving up just after the handover
    assert turn.fence and Holder.decode(turn.value).token == second.token
    assert holder_token(client, second) == second.token
    assert not client.exists(tickets_of(second)), "nobody is left in line"
    client.delete(second._key)


def test_a_grant_made_while_leaving_is_kept(alias, client):
    name = unique()
    held = Lock(name, timeout=30, cache=alias)
    assert held.acquire()
    waiter = Lock(name, timeout=30, cache=alias)
    assert not join_line(waiter).fence
    assert held.release()  # handed over before the waiter, giving up, leaves
    turn = get_backend(alias).leave(waiter._key, waiter.token, 30)
    assert turn.fence and Holder.decode(turn.value).token == waiter.token
    assert holder_token(client, waiter) == waiter.token
    client.delete(waiter._key)


@pytest.mark.parametrize("cache", ["memcached", "database"])
def test_fair_needs_a_cache_that_hands_over(cache, memcached_server, database_cache):
    family = {"memcached": "PyMemcacheCache", "database": "DatabaseCache"}[cache]
    with pytest.raises(ValueError, match=rf"fair=True .*{cache!r} \({family}\)"):
        Lock(unique(), timeout=5, cache=cache, fair=True)


@pytest.mark.parametrize(
    ("cache", "backend"), [("memcached", "PyMemcacheCache"), ("database", "DatabaseCache")]
)
def test_task_lock_fair_on_a_polling_cache_is_refused_at_decoration(cache, backend, settings):
    with pytest.raises(ValueError, match=rf"fair=True .*{cache!r} \({backend}\)"):
        task_lock(key=(), fair=True, cache=cache)
    settings.TASKLOCK = {"CACHE": cache}  # the lock cache, when task_lock names none
    with pytest.raises(ValueError, match=rf"fair=True .*{cache!r} \({backend}\)"):
        task_lock(key=(), fair=True)
    assert task_lock(key=(), fair=True, cache="default")  # Redis serves its line in order


def test_fair_must_be_a_bool(redis_server):
    with pytest.raises(ValueError, match="fair must be True or False, got 'yes'"):
        Lock(unique(), fair="yes")
    with pytest.raises(ValueError, match="task_lock fair must be True or False, got 1"):
        task_lock(fair=1)


def test_fair_task_lock_waits_in_line(alias, client):
    name = unique()
    held = Lock(name, timeout=30, cache=alias)
    assert held.acquire()

    @task_lock(name, on_locked="wait", wait=30, cache=alias, fair=True, renew=False)
    def body() -> str | None:
        return holder_token(client, held)

    got = []
    thread = threading.Thread(target=lambda: got.append(body()))
    thread.start()
    wait_until(lambda: client.exists(tickets_of(held)), "the task joins the line")
    assert held.release()
    thread.join(30)
    assert got and got[0] not in (None, held.token)


def test_a_handover_waits_for_replicas(settings, redis_sentinel):
    """With REPLICAS the new holder of a handed-over lock WAITs for the replicas (the grant was
    written on the releaser's connection): confirmed on Sentinel; fail closed without replicas."""
    settings.TASKLOCK = {"REPLICAS": 1, "REPLICA_TIMEOUT": 1}
    name = unique()
    held = Lock(name, timeout=30, cache="sentinel")
    assert held.acquire()
    waiter = Lock(name, timeout=30, cache="sentinel")
    got = []
    thread = threading.Thread(target=lambda: got.append(waiter.acquire(blocking=True, wait=30)))
    thread.start()
    primary = get_backend("sentinel").client
    wait_until(lambda: primary.exists(tickets_of(held)), "the waiter joins the line")
    assert held.release()
    thread.join(30)
    assert got == [True] and waiter.owned() and waiter.release()


def test_an_unconfirmed_handover_fails_closed(settings, client):
    name = unique()
    held = Lock(name, timeout=30)
    assert held.acquire()
    settings.TASKLOCK = {"REPLICAS": 1, "REPLICA_TIMEOUT": 0.05}  # a primary without replicas
    waiter = Lock(name, timeout=30)
    errors = []

    def wait() -> None:
        try:
            waiter.acquire(blocking=True, wait=30)
        except LockError as exc:
            errors.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    wait_until(lambda: client.exists(tickets_of(held)), "the waiter joins the line")
    assert held.release()
    thread.join(30)
    assert errors and "0 of 1 replicas" in str(errors[0])
    assert not waiter and not client.exists(held._key), "the unconfirmed lock was released"
