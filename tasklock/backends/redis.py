"""Redis (and Valkey), through django-redis, Django's own ``RedisCache`` or django-valkey: one
round trip per operation.

Acquire is ``SET NX PX`` (milliseconds, so sub-second timeouts are kept); release and extend
are Lua compare-and-act scripts run on the write client. Blocked waiters ``BLPOP`` a wake-up
list beside the key instead of polling; a waiter marks the key as waited for before it blocks,
and only then does a release push to that list, so an uncontended release costs no more than
a bare compare-and-delete.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

from ..conf import conf
from ..exceptions import LockError
from .base import LockBackend, Stored, text
from .redis_clients import ERRORS, LuaScript, is_cluster

#: a wake-up list is the lock key plus this; the lock name part of a key never holds a space
WAKE_SUFFIX = " wake"
#: how long a wake-up nobody took stays in the list (ms)
WAKE_TTL_MS = 1000
#: the waiters' mark is the lock key plus this; it outlives a waiter's BLPOP by MARK_SLACK_MS
WAITING_SUFFIX = " waiting"
MARK_SLACK_MS = 100
#: the longest single BLPOP; a waiter re-checks the lock at least this often (s)
MAX_BLOCK = 1.0
#: keys asked of each SCAN step when listing locks
SCAN_COUNT = 1000

#: SET NX PX and, only if it stored, the next fencing token, in one atomic step. The token
#: is the counter + 1, or the server's clock in microseconds when that is larger, so it keeps
#: growing even if the counter key is lost (a restart without persistence, an eviction).
_NEXT_TOKEN = b"""
local now = redis.call('time')
local token = (tonumber(redis.call('get', KEYS[2])) or 0) + 1
local clock = now[1] * 1000000 + now[2]
if clock > token then token = clock end
redis.call('set', KEYS[2], string.format('%d', token))
"""

_ACQUIRE = LuaScript(
    b"""
if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
"""
    + _NEXT_TOKEN
    + b"return token",
)

#: store ARGV[1] for ARGV[2] ms if KEYS[1] is absent (nil), else return what is there: a
#: publish's queue lock, or the duplicate's answer, in one round trip
_ADD_OR_GET = LuaScript(
    b"""
local stored = redis.call('get', KEYS[1])
if stored then return stored end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
""",
)

#: whether the value ``stored`` is the queue lock of task ARGV[3] (the holder JSON's task_id
#: and state, compared inside the script)
_QUEUED_BY = b"""
local function queued_by(stored)
  local ok, holder = pcall(cjson.decode, stored)
  return ok and type(holder) == 'table' and holder.state == 'queued' and holder.task_id == ARGV[3]
end
"""

#: take KEYS[1] if it is free or holds task ARGV[3]'s queue lock (converted in place), and
#: issue the next fencing token (KEYS[2] the counter)
_CLAIM = LuaScript(
    _QUEUED_BY
    + b"""
local stored = redis.call('get', KEYS[1])
if stored and not queued_by(stored) then return 0 end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
"""
    + _NEXT_TOKEN
    + b"return token",
)

#: take the run lock KEYS[1] (SET NX + token), then free KEYS[3] if it is task ARGV[3]'s
#: queue lock: one step, so no duplicate fits between the two locks
_HAND_OVER = LuaScript(
    _QUEUED_BY
    + b"""
if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
"""
    + _NEXT_TOKEN
    + b"""
local queued = redis.call('get', KEYS[3])
if queued and queued_by(queued) then redis.call('del', KEYS[3]) end
return token
""",
)

#: after a delete: wake a blocked waiter if one marked the key (KEYS[2] the wake-up list,
#: KEYS[3] the mark; the last ARGV is the wake-up's TTL in ms)
_WAKE_WAITER = b"""
if redis.call('exists', KEYS[3]) == 1 then
  redis.call('del', KEYS[2])
  redis.call('rpush', KEYS[2], 1)
  redis.call('pexpire', KEYS[2], ARGV[#ARGV])
end
"""

_RELEASE = LuaScript(
    b"""
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('del', KEYS[1])
"""
    + _WAKE_WAITER
    + b"return 1",
)

_MARK_WAITING = LuaScript(
    b"""
redis.call('set', KEYS[2], 1, 'PX', ARGV[1])
return redis.call('pttl', KEYS[1])
""",
)

_EXTEND = LuaScript(
    b"""
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
""",
)


#: a force-clear: delete whatever the key holds, return it, and wake a waiter as a release does
_CLEAR = LuaScript(
    b"""
local value = redis.call('get', KEYS[1])
if not value then return false end
redis.call('del', KEYS[1])
"""
    + _WAKE_WAITER
    + b"return value",
)


def write_client(cache: Any) -> Any:
    """The client that writes for ``cache`` (django-redis, django-valkey or Django's RedisCache)."""
    client = getattr(cache, "client", None)
    if client is not None and hasattr(client, "get_client"):  # django-redis, django-valkey
        return client.get_client(write=True)
    return cache._cache.get_client(write=True)  # Django: writes go to the first server


#: values and TTLs of many keys (in the table named by ``%s``) in one reply: far cheaper to
#: parse than a GET+PTTL pipeline
READ_BODY = b"""
local found = {}
for i, key in ipairs(%s) do
  found[2 * i - 1] = redis.call('get', key)
  found[2 * i] = redis.call('pttl', key)
end
return found
"""
_READ = LuaScript(READ_BODY % b"KEYS")


def glob_escape(text: str) -> str:
    """``text`` as a literal inside a ``SCAN MATCH`` pattern."""
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


def milliseconds(timeout: float) -> int:
    return max(1, math.ceil(timeout * 1000))


def scan_node(client: Any, match: str, skip: int) -> Iterator[list[Stored]]:
    """``SCAN MATCH`` on one server, in batches of lock keys: a key whose part after the first
    ``skip`` characters holds a space (a waiters' list or mark) is left out."""
    cursor = 0
    while True:
        cursor, found = client.scan(cursor, match=match, count=SCAN_COUNT)
        keys = (raw.decode(errors="replace") for raw in found)
        batch = [Stored(key) for key in keys if " " not in key[skip:]]
        if batch:
            yield batch
        if not cursor:
            return


class RedisBackend(LockBackend):
    """One Redis server (or a Sentinel-managed primary) through a plain client."""

    family = "redis"
    errors = ERRORS
    fences = True

    def __init__(self, cache: Any, client: Any = None) -> None:
        super().__init__(cache)
        self.client = write_client(cache) if client is None else client
        socket_timeout = self.connection_kwargs().get("socket_timeout")
        self.max_block = min(MAX_BLOCK, socket_timeout / 2) if socket_timeout else MAX_BLOCK
        self._fence = self.fence_key()
        #: replicas that must confirm an acquire (``WAIT``), and how long it may take (ms)
        self.replicas: int = conf.REPLICAS
        self.replica_timeout_ms = milliseconds(conf.REPLICA_TIMEOUT)

    def connection_kwargs(self) -> dict[str, Any]:
        return self.client.connection_pool.connection_kwargs

    def companions(self, key: str) -> tuple[str, str, str]:
        """The lock key, its wake-up list and its waiters' mark."""
        return key, key + WAKE_SUFFIX, key + WAITING_SUFFIX

    def add(self, key: str, value: str, timeout: float) -> int:
        if self.replicas:
            return self.add_confirmed(key, value, timeout)
        return _ACQUIRE((key, self._fence), (value, milliseconds(timeout)), client=self.client)

    def claim(self, key: str, value: str, timeout: float, task_id: str) -> int:
        return _CLAIM((key, self._fence), (value, milliseconds(timeout), task_id), client=self.client)

    def hand_over(self, key: str, value: str, timeout: float, queue_key: str, task_id: str) -> int:
        keys = (key, self._fence, queue_key)
        return _HAND_OVER(keys, (value, milliseconds(timeout), task_id), client=self.client)

    def add_or_get(self, key: str, value: str, timeout: float) -> str | None:
        return text(_ADD_OR_GET((key,), (value, milliseconds(timeout)), client=self.client))

    def pipeline_for(self, key: str) -> Any:
        """A pipeline (no transaction) to the server that holds ``key``."""
        return self.client.pipeline(transaction=False)

    def queue_add(self, pipe: Any, key: str, value: str, timeout: float) -> None:
        """Queue this backend's acquire of ``key`` on ``pipe``."""
        pipe.eval(_ACQUIRE.body, 2, key, self._fence, value, milliseconds(timeout))

    def add_confirmed(self, key: str, value: str, timeout: float) -> int:
        """``add`` pipelined with ``WAIT replicas`` (one round trip). A lock stored but confirmed
        by fewer replicas could be lost in a failover: it is released (owner-checked) and the
        acquire fails with ``LockError``."""
        pipe = self.pipeline_for(key)
        self.queue_add(pipe, key, value, timeout)
        pipe.execute_command("WAIT", self.replicas, self.replica_timeout_ms)
        added, confirmed = pipe.execute()
        added = int(added or 0)
        if added and confirmed < self.replicas:
            self.delete_if(key, value)
            raise LockError(
                f"{self.server(key)}: only {confirmed} of {self.replicas} replicas (TASKLOCK['REPLICAS']) "
                f"confirmed the lock within {self.replica_timeout_ms} ms; it was released, not acquired"
            )
        return added

    def get(self, key: str) -> str | None:
        return text(self.client.get(key))

    def server(self, key: str | None) -> str:
        kwargs = self.connection_kwargs()
        service = getattr(self.client.connection_pool, "service_name", None)
        if service is not None:
            where = f"the primary of sentinel service {service!r}"
        elif "path" in kwargs:
            where = f"server unix:{kwargs['path']}"
        else:
            where = f"server {kwargs.get('host')}:{kwargs.get('port')}"
        return f"{where}, db {kwargs.get('db', 0)}"

    def delete_if(self, key: str, value: str) -> bool:
        return bool(_RELEASE(self.companions(key), (value, WAKE_TTL_MS), client=self.client))

    def replace_if(self, key: str, value: str, new_value: str, timeout: float) -> bool:
        args = (value, new_value, milliseconds(timeout))
        return bool(_EXTEND((key,), args, client=self.client))

    def wait(self, key: str, remaining: float, pause: float) -> None:
        block = min(remaining, self.max_block)
        mark = milliseconds(block) + MARK_SLACK_MS
        key, wake, waiting = self.companions(key)
        ttl_ms = _MARK_WAITING((key, waiting), (mark,), client=self.client)
        if ttl_ms == -2:  # released or expired since the failed SET: try again at once
            return
        seconds = min(block, ttl_ms / 1000) if ttl_ms > 0 else block
        if seconds >= 0.001:
            self.client.blpop([wake], timeout=seconds)

    def scan_match(self) -> tuple[str, int]:
        """The ``SCAN MATCH`` pattern of the lock keys and the length of their common start.

        The part of a lock key after the prefix never holds a space (such names are hashed), so
        keys whose part does (waiters' lists and marks) are left out; the cache's own
        ``KEY_PREFIX`` may hold spaces.
        """
        start = self.key_start()
        return glob_escape(start) + "*", len(start)

    def scan(self) -> Iterator[list[Stored]]:
        """``SCAN MATCH`` inside the prefix, in batches; values unread."""
        yield from scan_node(self.client, *self.scan_match())

    def read(self, keys: list[str]) -> list[Stored]:
        """``GET`` + ``PTTL`` of every key, in one script call (an absent key reads as nil, -2)."""
        replies = _READ(keys, client=self.client) if keys else []
        return stored_replies(keys, replies)

    def clear(self, key: str) -> str | None:
        """``GET`` + ``DEL`` in one script, whatever the value; a blocked waiter is woken."""
        raw = _CLEAR(self.companions(key), (WAKE_TTL_MS,), client=self.client)
        return text(raw)


def stored_replies(keys: list[str], replies: list[Any]) -> list[Stored]:
    """``Stored`` entries from alternating ``GET``/``PTTL`` replies of ``keys``."""
    return [
        Stored(key, text(raw), ttl / 1000 if ttl >= 0 else None)
        for key, raw, ttl in zip(keys, replies[::2], replies[1::2], strict=True)
    ]


def adapter(cache: Any) -> RedisBackend:
    """The adapter for a Redis-family cache: a cluster client gets the cluster adapter.

    A cluster client connects when it is made, so this can fail: ``LockError``."""
    try:
        client = write_client(cache)
    except ERRORS as exc:
        raise LockError(f"could not make its Redis client: {type(exc).__name__}: {exc}") from exc
    if is_cluster(client):
        from .redis_cluster import RedisClusterBackend

        return RedisClusterBackend(cache, client)
    return RedisBackend(cache, client)
