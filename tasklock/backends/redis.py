"""Redis, through django-redis or Django's own ``RedisCache``: one round trip per operation.

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

from redis.commands.core import Script
from redis.exceptions import RedisError

from .base import LockBackend, Stored, text

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

_ACQUIRE = Script(
    None,  # type: ignore[arg-type]  # registered on no client: every call names the cache's
    b"""
if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
"""
    + _NEXT_TOKEN
    + b"return token",
)

#: store ARGV[1] for ARGV[2] ms if KEYS[1] is absent (nil), else return what is there: a
#: publish's queue lock, or the duplicate's answer, in one round trip
_ADD_OR_GET = Script(
    None,  # type: ignore[arg-type]  # registered on no client: every call names the cache's
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
_CLAIM = Script(
    None,  # type: ignore[arg-type]  # registered on no client: every call names the cache's
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
_HAND_OVER = Script(
    None,  # type: ignore[arg-type]  # registered on no client: every call names the cache's
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

_RELEASE = Script(
    None,  # type: ignore[arg-type]  # registered on no client: every call names the cache's
    b"""
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('del', KEYS[1])
"""
    + _WAKE_WAITER
    + b"return 1",
)

_MARK_WAITING = Script(
    None,  # type: ignore[arg-type]  # registered on no client: every call names the cache's
    b"""
redis.call('set', KEYS[2], 1, 'PX', ARGV[1])
return redis.call('pttl', KEYS[1])
""",
)

_EXTEND = Script(
    None,  # type: ignore[arg-type]  # registered on no client: every call names the cache's
    b"""
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
""",
)


#: a force-clear: delete whatever the key holds, return it, and wake a waiter as a release does
_CLEAR = Script(
    None,  # type: ignore[arg-type]  # registered on no client: every call names the cache's
    b"""
local value = redis.call('get', KEYS[1])
if not value then return false end
redis.call('del', KEYS[1])
"""
    + _WAKE_WAITER
    + b"return value",
)


def write_client(cache: Any) -> Any:
    """The redis-py client that writes for ``cache`` (django-redis or Django's RedisCache)."""
    client = getattr(cache, "client", None)
    if client is not None and hasattr(client, "get_client"):  # django-redis
        return client.get_client(write=True)
    return cache._cache.get_client(write=True)  # Django: writes go to the first server


#: values and TTLs of many keys in one reply: far cheaper to parse than a GET+PTTL pipeline
_READ = Script(
    None,  # type: ignore[arg-type]  # registered on no client: every call names the cache's
    b"""
local found = {}
for i, key in ipairs(KEYS) do
  found[2 * i - 1] = redis.call('get', key)
  found[2 * i] = redis.call('pttl', key)
end
return found
""",
)


def glob_escape(text: str) -> str:
    """``text`` as a literal inside a ``SCAN MATCH`` pattern."""
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


def milliseconds(timeout: float) -> int:
    return max(1, math.ceil(timeout * 1000))


class RedisBackend(LockBackend):
    family = "redis"
    errors = (RedisError, OSError)
    fences = True

    def __init__(self, cache: Any) -> None:
        super().__init__(cache)
        self.client = write_client(cache)
        kwargs = self.client.connection_pool.connection_kwargs
        socket_timeout = kwargs.get("socket_timeout")
        self.max_block = min(MAX_BLOCK, socket_timeout / 2) if socket_timeout else MAX_BLOCK
        self._fence = self.fence_key()

    def add(self, key: str, value: str, timeout: float) -> int:
        return _ACQUIRE((key, self._fence), (value, milliseconds(timeout)), client=self.client)

    def claim(self, key: str, value: str, timeout: float, task_id: str) -> int:
        return _CLAIM((key, self._fence), (value, milliseconds(timeout), task_id), client=self.client)

    def hand_over(self, key: str, value: str, timeout: float, queue_key: str, task_id: str) -> int:
        keys = (key, self._fence, queue_key)
        return _HAND_OVER(keys, (value, milliseconds(timeout), task_id), client=self.client)

    def add_or_get(self, key: str, value: str, timeout: float) -> str | None:
        return text(_ADD_OR_GET((key,), (value, milliseconds(timeout)), client=self.client))

    def get(self, key: str) -> str | None:
        return text(self.client.get(key))

    def server(self, key: str | None) -> str:
        kwargs = self.client.connection_pool.connection_kwargs
        where = f"unix:{kwargs['path']}" if "path" in kwargs else f"{kwargs.get('host')}:{kwargs.get('port')}"
        return f"server {where}, db {kwargs.get('db', 0)}"

    def delete_if(self, key: str, value: str) -> bool:
        keys = (key, key + WAKE_SUFFIX, key + WAITING_SUFFIX)
        return bool(_RELEASE(keys, (value, WAKE_TTL_MS), client=self.client))

    def replace_if(self, key: str, value: str, new_value: str, timeout: float) -> bool:
        args = (value, new_value, milliseconds(timeout))
        return bool(_EXTEND((key,), args, client=self.client))

    def wait(self, key: str, remaining: float, pause: float) -> None:
        block = min(remaining, self.max_block)
        mark = milliseconds(block) + MARK_SLACK_MS
        ttl_ms = _MARK_WAITING((key, key + WAITING_SUFFIX), (mark,), client=self.client)
        if ttl_ms == -2:  # released or expired since the failed SET: try again at once
            return
        seconds = min(block, ttl_ms / 1000) if ttl_ms > 0 else block
        if seconds >= 0.001:
            self.client.blpop([key + WAKE_SUFFIX], timeout=seconds)

    def scan(self) -> Iterator[list[Stored]]:
        """``SCAN MATCH`` inside the prefix, in batches; values unread.

        The part of a lock key after the prefix never holds a space (such names are hashed), so
        keys whose part does (waiters' lists and marks) are left out; the cache's own
        ``KEY_PREFIX`` may hold spaces.
        """
        start = self.key_start()
        match, skip = glob_escape(start) + "*", len(start)
        cursor = 0
        while True:
            cursor, found = self.client.scan(cursor, match=match, count=SCAN_COUNT)
            keys = (raw.decode(errors="replace") for raw in found)
            batch = [Stored(key) for key in keys if " " not in key[skip:]]
            if batch:
                yield batch
            if not cursor:
                return

    def read(self, keys: list[str]) -> list[Stored]:
        """``GET`` + ``PTTL`` of every key, in one script call (an absent key reads as nil, -2)."""
        replies = _READ(keys, client=self.client) if keys else []
        return [
            Stored(key, text(raw), ttl / 1000 if ttl >= 0 else None)
            for key, raw, ttl in zip(keys, replies[::2], replies[1::2], strict=True)
        ]

    def clear(self, key: str) -> str | None:
        """``GET`` + ``DEL`` in one script, whatever the value; a blocked waiter is woken."""
        keys = (key, key + WAKE_SUFFIX, key + WAITING_SUFFIX)
        raw = _CLEAR(keys, (WAKE_TTL_MS,), client=self.client)
        return text(raw)
