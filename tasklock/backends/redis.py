"""Redis (and Valkey), through django-redis, Django's own ``RedisCache`` or django-valkey: one
round trip per operation.

Acquire is ``SET NX PX`` (milliseconds, so sub-second timeouts are kept); release and extend
are Lua compare-and-act scripts run on the write client. Blocked waiters wait in line and a
release hands the lock to the first of them (``redis_line``); an uncontended release finds no
line and costs no more than a bare compare-and-delete.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from typing import Any

from ..conf import conf
from ..exceptions import LockError
from ..values.calls import Attempt, Grant, Plan
from ..values.holder import around_times
from .base import LockBackend, Stored, text
from .redis_clients import ERRORS, LuaScript
from .redis_line import (
    LEAVE,
    LINE,
    LINE_TTL_MS,
    NEXT_TOKEN,
    TAKE_OR_QUEUE,
    TICKET_SLACK_MS,
    Turn,
    line_suffixes,
    ticket,
    waiting_in_line,
)
from .redis_listing import READ, glob_escape, scan_node, stored_replies
from .redis_slots import SLOT_ADD, SLOT_EXTEND, SLOT_RELEASE, SLOT_TAKE_OR_QUEUE

#: the ``limit`` of any limited name: its slot scripts' keys (the line of slot waiters)
SLOTTED = 2
#: the longest single wait (BLPOP) of a waiter in line; it then renews its ticket (s)
MAX_BLOCK = 0.5
#: each waiter blocks at most a share of ``max_block`` of its own, down to 1 - this: waiters
#: that joined together do not all renew their tickets at the same moments (a burst on Redis,
#: and on an event loop that holds hundreds of them)
BLOCK_JITTER = 0.25

_ACQUIRE = LuaScript(
    NEXT_TOKEN
    + b"""
if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
return next_token(KEYS[2])
""",
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
    + NEXT_TOKEN
    + b"""
local stored = redis.call('get', KEYS[1])
if stored and not queued_by(stored) then return 0 end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
return next_token(KEYS[2])
""",
)

#: take the run lock KEYS[1] (SET NX + token), then free KEYS[3] if it is task ARGV[3]'s
#: queue lock: one step, so no duplicate fits between the two locks
_HAND_OVER = LuaScript(
    _QUEUED_BY
    + NEXT_TOKEN
    + b"""
if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
local token = next_token(KEYS[2])
local queued = redis.call('get', KEYS[3])
if queued and queued_by(queued) then redis.call('del', KEYS[3]) end
return token
""",
)

#: an owner-checked delete; the lock then goes to the next live waiter in line, if any
_RELEASE = LuaScript(
    LINE
    + b"""
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
if not hand_over() then redis.call('del', KEYS[1]) end
return 1
""",
)

_EXTEND = LuaScript(
    b"""
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
""",
)


#: whether a script's reply says it stored the lock
Taken = Callable[[Any], bool]


def _nothing_there(reply: Any) -> bool:
    """``_ADD_OR_GET`` stored its value: nothing was there to return."""
    return reply is None


#: a force-clear: delete whatever the key holds, return it, and hand the lock over as a
#: release does. (A limited name's record is deleted: its waiters, in their own line, take
#: the free slots at their next look, within ``MAX_BLOCK``.)
_CLEAR = LuaScript(
    LINE
    + b"""
local value = redis.call('get', KEYS[1])
if not value then return false end
if load_record(value) or not hand_over() then redis.call('del', KEYS[1]) end
return value
""",
)


def write_client(cache: Any) -> Any:
    """The client that writes for ``cache`` (django-redis, django-valkey or Django's RedisCache)."""
    client = getattr(cache, "client", None)
    if client is not None and hasattr(client, "get_client"):  # django-redis, django-valkey
        return client.get_client(write=True)
    return cache._cache.get_client(write=True)  # Django: writes go to the first server


def queue_args(
    value: str, timeout: float, token: str, stay: float, fair: bool, limit: int
) -> tuple[LuaScript, tuple[Any, ...]]:
    """The script and arguments of a look at the line (see ``take_or_queue``)."""
    ttl = milliseconds(timeout)
    entry = ticket(ttl, around_times(value)) if stay > 0 else ""
    alive = milliseconds(stay) + TICKET_SLACK_MS if stay > 0 else 0
    args = (value, ttl, token, entry, alive, "fair" if fair else "", LINE_TTL_MS)
    return (TAKE_OR_QUEUE, args) if limit == 1 else (SLOT_TAKE_OR_QUEUE, (*args, limit))


def milliseconds(timeout: float) -> int:
    return max(1, math.ceil(timeout * 1000))


class RedisBackend(LockBackend):
    """One Redis server (or a Sentinel-managed primary) through a plain client."""

    family = "redis"
    errors = ERRORS
    fences = True
    hands_over = True

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

    def companions(self, key: str, limit: int = 1) -> tuple[str, str, str]:
        """The lock key, the waiting line for it (for a slot of it, with ``limit`` > 1) and the
        line's tickets."""
        line, tickets = line_suffixes(limit)
        return key, key + line, key + tickets

    def line_keys(self, key: str, limit: int = 1) -> tuple[str, ...]:
        """The keys of the line scripts: the companions, then the fencing counter if it fences."""
        companions = self.companions(key, limit)
        return (*companions, self._fence) if self.fences else companions

    def add(self, key: str, value: str, timeout: float) -> int:
        if self.replicas:
            return self.add_confirmed(key, value, timeout)
        return _ACQUIRE((key, self._fence), (value, milliseconds(timeout)), client=self.client)

    def claim(self, key: str, value: str, timeout: float, task_id: str) -> int:
        return self.write(_CLAIM, (key, self._fence), (value, milliseconds(timeout), task_id), value)

    def hand_over(self, key: str, value: str, timeout: float, queue_key: str, task_id: str) -> int:
        keys = (key, self._fence, queue_key)
        return self.write(_HAND_OVER, keys, (value, milliseconds(timeout), task_id), value)

    def add_or_get(self, key: str, value: str, timeout: float) -> str | None:
        return text(self.write(_ADD_OR_GET, (key,), (value, milliseconds(timeout)), value, _nothing_there))

    def convert(self, key: str, value: str, new_value: str, timeout: float) -> int:
        return int(self.write(_EXTEND, (key,), (value, new_value, milliseconds(timeout)), new_value))

    def write(
        self, script: LuaScript, keys: tuple[str, ...], args: tuple, value: str, took: Taken = bool
    ) -> Any:
        """The reply of ``script``, which may store holder ``value`` at ``keys[0]`` (``took``
        tells from its reply whether it did); with ``REPLICAS``, confirmed as ``add`` is."""
        if not self.replicas:
            return script(keys, args, client=self.client)
        pipe = self.pipeline_for(keys[0])
        pipe.eval(script.body, len(keys), *keys, *args)
        return self.replicated(pipe, keys[0], value, took)

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
        return int(self.replicated(pipe, key, value) or 0)

    def replicated(self, pipe: Any, key: str, value: str, took: Taken = bool) -> Any:
        """The reply of the one step queued on ``pipe``, sent with ``WAIT replicas`` (one round
        trip). If that step stored holder ``value`` at ``key`` (``took(reply)``) but fewer
        replicas confirmed it, it is released (owner-checked) and the step fails: ``LockError``."""
        pipe.execute_command("WAIT", self.replicas, self.replica_timeout_ms)
        reply, confirmed = pipe.execute()
        if took(reply) and confirmed < self.replicas:
            self.delete_if(key, value)
            raise self.unconfirmed(key, confirmed)
        return reply

    def unconfirmed(self, key: str, confirmed: int) -> LockError:
        return LockError(
            f"{self.server(key)}: only {confirmed} of {self.replicas} replicas (TASKLOCK['REPLICAS']) "
            f"confirmed the lock within {self.replica_timeout_ms} ms; it was released, not acquired"
        )

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
        return bool(_RELEASE(self.line_keys(key), (value,), client=self.client))

    def replace_if(self, key: str, value: str, new_value: str, timeout: float) -> bool:
        args = (value, new_value, milliseconds(timeout))
        return bool(_EXTEND((key,), args, client=self.client))

    def add_slot(self, key: str, value: str, timeout: float, limit: int) -> int:
        keys = (key, self._fence) if self.fences else (key,)
        return int(SLOT_ADD(keys, (value, milliseconds(timeout), limit), client=self.client))

    def delete_slot(self, key: str, value: str) -> bool:
        return bool(SLOT_RELEASE(self.line_keys(key, SLOTTED), (value,), client=self.client))

    def replace_slot(self, key: str, value: str, new_value: str, timeout: float) -> bool:
        args = (value, new_value, milliseconds(timeout))
        return bool(SLOT_EXTEND(self.line_keys(key, SLOTTED), args, client=self.client))

    def acquiring(self, attempt: Attempt) -> Plan[Grant | None]:
        """A blocking or fair acquire looks at the line (``redis_line``), as does a limited
        name's try that replicas must confirm; a plain try is an ``add`` (``add_slot``)."""
        if attempt.blocking or attempt.fair or (attempt.limit > 1 and self.replicas):
            return waiting_in_line(attempt, self.max_block * random.uniform(1 - BLOCK_JITTER, 1))
        return super().acquiring(attempt)

    def take_or_queue(
        self, key: str, value: str, timeout: float, token: str, stay: float, fair: bool, limit: int = 1
    ) -> Turn:
        """Take the lock (a slot of a name of ``limit`` > 1) if it is free (with ``fair``,
        only when no live waiter is ahead), or collect a grant already made to ``token``; else,
        when ``stay`` > 0, join (or stay in) the line, alive for ``stay`` seconds more."""
        script, args = queue_args(value, timeout, token, stay, fair, limit)
        turn = Turn.of(script(self.line_keys(key, limit), args, client=self.client))
        return self.confirmed(key, turn, value, timeout, limit)

    def grant_list(self, key: str, token: str, limit: int = 1) -> str:
        """The list where the line pushes the grant of waiter ``token``."""
        return self.companions(key, limit)[2] + " " + token

    def await_grant(
        self, key: str, token: str, seconds: float, timeout: float, limit: int = 1
    ) -> Turn | None:
        """Block up to ``seconds`` for the grant of ``token``, which is in line."""
        grant = self.client.blpop([self.grant_list(key, token, limit)], timeout=seconds)
        return None if grant is None else self.confirmed(key, Turn.granted(grant[1]), "", timeout)

    def leave(self, key: str, token: str, timeout: float, limit: int = 1) -> Turn | None:
        """Leave the line; the grant if the lock was handed to ``token`` meanwhile."""
        grant = LEAVE(self.line_keys(key, limit), (token, limit), client=self.client)
        return None if grant is None else self.confirmed(key, Turn.granted(grant), "", timeout, limit)

    def confirmed(self, key: str, turn: Turn, value: str, timeout: float, limit: int = 1) -> Turn:
        """``turn``, once ``REPLICAS`` replicas have the lock it took. The grant was written on
        another connection, so the new holder rewrites its value (owner-checked) and ``WAIT``s
        on its own: replication is in order, so that covers the grant. Too few confirmations
        release the lock and raise ``LockError``, as ``add_confirmed`` does."""
        if not (self.replicas and turn.fence):
            return turn
        stored = turn.value or value
        pipe = self.pipeline_for(key)
        if limit == 1:
            pipe.eval(_EXTEND.body, 1, key, stored, stored, milliseconds(timeout))
        else:
            keys = self.line_keys(key, SLOTTED)
            pipe.eval(SLOT_EXTEND.body, len(keys), *keys, stored, stored, milliseconds(timeout))
        pipe.execute_command("WAIT", self.replicas, self.replica_timeout_ms)
        kept, confirmed = pipe.execute()
        if not kept:
            raise LockError(f"{self.server(key)}: the lock handed over was gone before replicas confirmed it")
        if confirmed < self.replicas:
            self.delete_if(key, stored) if limit == 1 else self.delete_slot(key, stored)
            raise self.unconfirmed(key, confirmed)
        return turn

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
        replies = READ(keys, client=self.client) if keys else []
        return stored_replies(keys, replies)

    def clear(self, key: str) -> str | None:
        """``GET`` + ``DEL`` in one script, whatever the value; the lock goes to the next waiter."""
        raw = _CLEAR(self.line_keys(key), (), client=self.client)
        return text(raw)
