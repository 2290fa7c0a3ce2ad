"""Waiting in line on Redis: a release hands the lock straight to the next live waiter.

A blocked waiter joins the lock's line (a list of tokens, ``<key> line``) with a ticket
(``<key> tickets``, token → ticket) that says until when it is alive, the TTL it asked for
and its holder metadata, and then ``BLPOP``s its own grant list (``<key> tickets <token>``).
A release (or a force-clear) that finds the line non-empty gives the lock to the first
waiter whose ticket is still alive, in the same script: it stores that waiter's metadata,
stamped with the server's clock, and pushes the grant (fencing token, server time, value).
The lock is never free while someone live waits, so no newcomer barges in and nobody wakes
for nothing; a waiter learns of its grant one hop after the release.

A waiter renews its ticket each time its ``BLPOP`` times out (at most every ``MAX_BLOCK``), so
a dead waiter's ticket is skipped after ``TICKET_SLACK_MS`` more. A grant already pushed is
found by the next look (another ``take_or_queue``, or ``leave``): a missed wake-up is never a
lost lock. With ``fair``, a free lock is taken only by the first live waiter in line.
"""

from __future__ import annotations

import logging
import time
from typing import Any, NamedTuple

from ..exceptions import shown
from ..values.calls import Attempt, Call, Grant, Plan
from .base import checking_limit, giving_back, text
from .redis_clients import LuaScript

logger = logging.getLogger("tasklock")

#: the shortest wait for a grant (BLPOP rounds a shorter one to 0, which blocks for ever)
MIN_BLOCK = 0.001

#: the line and the tickets are the lock key plus these (a lock name part never holds a space)
LINE_SUFFIX = " line"
TICKETS_SUFFIX = " tickets"
#: the waiters for a slot of a limited name (``limit`` > 1) wait in a line of their own: a
#: release of one kind never hands the name to a waiter of the other
SLOT_LINE_SUFFIX = " slot line"
SLOT_TICKETS_SUFFIX = " slot tickets"


def line_suffixes(limit: int) -> tuple[str, str]:
    """The suffixes of the line and the tickets of waiters for a name of ``limit``."""
    return (LINE_SUFFIX, TICKETS_SUFFIX) if limit == 1 else (SLOT_LINE_SUFFIX, SLOT_TICKETS_SUFFIX)


#: how long a ticket outlives its waiter's BLPOP, for the waiter to renew it (ms)
TICKET_SLACK_MS = 200
#: the line and its tickets outlive their last renewal by this (ms); every ticket dies sooner
LINE_TTL_MS = 5000

#: the next fencing token (counter KEYS[n] + 1, or the server's clock in µs when larger, so
#: it keeps growing even if the counter key is lost: a restart without persistence, an eviction)
NEXT_TOKEN = b"""
local function next_token(counter, now)
  now = now or redis.call('time')
  local token = (tonumber(redis.call('get', counter)) or 0) + 1
  local clock = now[1] * 1000000 + now[2]
  if clock > token then token = clock end
  redis.call('set', counter, string.format('%d', token))
  return token
end
"""

#: KEYS: the lock, its line, its tickets, and the fencing counter where the backend fences.
#: A ticket is "<alive until, server ms> <TTL ms> <head bytes> <head><tail>": the holder
#: metadata around its two times, which the grant fills in.
LINE = (
    NEXT_TOKEN
    + b"""
local function clock()
  local now = redis.call('time')
  local seconds, micros = tonumber(now[1]), tonumber(now[2])
  return seconds, micros, seconds * 1000 + math.floor(micros / 1000), now
end

local function parts(ticket)
  local _, stop, alive, ttl, size = string.find(ticket, '^(%d+) (%d+) (%d+) ')
  size = tonumber(size)
  return tonumber(alive), ttl, string.sub(ticket, stop + 1, stop + size), string.sub(ticket, stop + size + 1)
end

local function stamp(micros)
  return string.format('%d.%06d', math.floor(micros / 1000000), micros % 1000000)
end

local function fence(now)
  if KEYS[4] then return next_token(KEYS[4], now) end
  return 1
end

local function leave_line(waiter)
  if redis.call('hdel', KEYS[3], waiter) == 1 then redis.call('lrem', KEYS[2], 1, waiter) end
end

-- the lock (free, or still the releaser's: it is overwritten) goes to the first waiter whose
-- ticket is alive; dead tickets are dropped. False if nobody live waits. With ``place``, the
-- waiter's value and TTL (ms) go to it instead (a slot of a limited name's record).
local function hand_over(place)
  local seconds, micros, now_ms, time
  while true do
    local waiter = redis.call('lpop', KEYS[2])
    if not waiter then return false end
    local ticket = redis.call('hget', KEYS[3], waiter)
    if ticket then
      redis.call('hdel', KEYS[3], waiter)
      if not time then seconds, micros, now_ms, time = clock() end
      local alive, ttl, head, tail = parts(ticket)
      if alive >= now_ms then
        local now = seconds * 1000000 + micros
        local value = head .. stamp(now) .. ',"expires_at":' .. stamp(now + tonumber(ttl) * 1000) .. tail
        if place then place(value, tonumber(ttl)) else redis.call('set', KEYS[1], value, 'PX', ttl) end
        local grant = KEYS[3] .. ' ' .. waiter
        redis.call('rpush', grant, string.format('%d %d ', fence(time), now) .. value)
        redis.call('pexpire', grant, ttl)
        return true
      end
    end
  end
end

-- the first waiter in line whose ticket is alive; dead ones ahead of it are dropped
local function first_alive(now_ms)
  while true do
    local waiter = redis.call('lindex', KEYS[2], 0)
    if not waiter then return nil end
    local ticket = redis.call('hget', KEYS[3], waiter)
    if ticket and parts(ticket) >= now_ms then return waiter end
    redis.call('lpop', KEYS[2])
    redis.call('hdel', KEYS[3], waiter)
  end
end

-- join (or stay in) the line when ARGV[4] holds a ticket, alive ARGV[5] ms more
local function join_line(now_ms)
  if ARGV[4] == '' then return end
  local ticket = string.format('%d ', now_ms + tonumber(ARGV[5])) .. ARGV[4]
  if redis.call('hset', KEYS[3], ARGV[3], ticket) == 1 then redis.call('rpush', KEYS[2], ARGV[3]) end
  redis.call('pexpire', KEYS[2], ARGV[7])
  redis.call('pexpire', KEYS[3], ARGV[7])
end

-- a limited name's record (``values.slots``): its holders' slots, or nil for another value
local function load_record(stored)
  if not stored or string.sub(stored, 1, 9) ~= '{"limit":' then return nil end
  local ok, record = pcall(cjson.decode, stored)
  if not ok or type(record) ~= 'table' or type(record.slots) ~= 'table' then return nil end
  return record
end

local function live_slots(record, now_ms)
  local kept = {}
  for _, slot in ipairs(record.slots) do
    if tonumber(slot[1]) > now_ms then kept[#kept + 1] = slot end
  end
  return kept
end

-- store the record (the key lives until its last deadline), or delete it when no slot is left
local function save_record(limit, slots, now_ms)
  if #slots == 0 then
    redis.call('del', KEYS[1])
    return
  end
  local parts, last = {}, now_ms + 1
  for i, slot in ipairs(slots) do
    parts[i] = string.format('[%d,', slot[1]) .. cjson.encode(slot[2]) .. ']'
    if slot[1] > last then last = slot[1] end
  end
  local record = string.format('{"limit":%d,"slots":[', limit) .. table.concat(parts, ',') .. ']}'
  redis.call('set', KEYS[1], record, 'PX', string.format('%d', last - now_ms))
end

-- give free slots to the live waiters in line, in order, and store the record
local function refill(limit, slots, now_ms)
  local function place(value, ttl) slots[#slots + 1] = {now_ms + ttl, value} end
  while #slots < limit and hand_over(place) do end
  save_record(limit, slots, now_ms)
end

-- a free lock, or a limited name's free slots (ARGV[2] its limit), go to the waiters in line
local function pass_on(limit)
  if limit == 1 then
    if redis.call('exists', KEYS[1]) == 0 then hand_over() end
    return
  end
  local _, _, now_ms = clock()
  local stored = redis.call('get', KEYS[1])
  local record = load_record(stored)
  if not stored then
    refill(limit, {}, now_ms)
  elseif record and tonumber(record.limit) == limit then
    refill(limit, live_slots(record, now_ms), now_ms)
  end
end
"""
)

#: ARGV: value, TTL ms, token, ticket ('' to stay out of line), alive ms, 'fair' or '',
#: LINE_TTL_MS.
#: {2, grant} if the lock was handed over already; {1, fencing token} if taken now; else
#: {0, the lock's PTTL, the server's time in µs}, in line when a ticket was given.
TAKE_OR_QUEUE = LuaScript(
    LINE
    + b"""
local grant = redis.call('lpop', KEYS[3] .. ' ' .. ARGV[3])
if grant then return {2, grant} end
local seconds, micros, now_ms, time = clock()
if redis.call('exists', KEYS[1]) == 0 then
  local first = ARGV[6] == 'fair' and first_alive(now_ms)
  if not first or first == ARGV[3] then
    redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
    leave_line(ARGV[3])
    return {1, fence(time)}
  end
end
join_line(now_ms)
return {0, redis.call('pttl', KEYS[1]), string.format('%d', seconds * 1000000 + micros)}
""",
)

#: ARGV: token, the name's limit (absent: 1). Leave the line: the grant if the lock was
#: handed over meanwhile (it is the leaver's now), else false. A free lock (free slots) goes
#: on to the next waiters.
LEAVE = LuaScript(
    LINE
    + b"""
local grant = redis.call('lpop', KEYS[3] .. ' ' .. ARGV[1])
if grant then return grant end
leave_line(ARGV[1])
pass_on(tonumber(ARGV[2]) or 1)
return false
""",
)


class Turn(NamedTuple):
    """What one look at the line found."""

    #: the fencing token (1 where the backend does not fence) once the lock is ours, else 0
    fence: int = 0
    #: the stored value when the lock was handed over (stamped by the server), else None
    value: str | None = None
    #: the server's clock (µs) when the lock was handed over, or when this look was made
    server_us: int = 0
    #: seconds the lock still lives, when it is held by someone else and has a TTL
    expires_in: float | None = None
    #: the limit the name is held with, when it is not the one asked for (else 0)
    held_limit: int = 0

    @classmethod
    def granted(cls, raw: bytes) -> Turn:
        """A grant: ``"<fencing token> <server µs> <value>"``."""
        fence, server_us, value = text(raw).split(" ", 2)  # type: ignore[union-attr]
        return cls(int(fence), value, int(server_us))

    @classmethod
    def of(cls, reply: list[Any]) -> Turn:
        """A ``TAKE_OR_QUEUE`` reply."""
        if reply[0] == 2:
            return cls.granted(reply[1])
        if reply[0] == 1:
            return cls(int(reply[1]))
        if reply[0] == 3:
            return cls(held_limit=int(reply[1]))
        pttl = int(reply[1])
        return cls(0, None, int(reply[2]), pttl / 1000 if pttl > 0 else None)


def ticket(ttl_ms: int, around_times: tuple[str, str]) -> str:
    """A ticket's text after its alive time: the TTL, and the metadata ``around_times``."""
    head, tail = around_times
    return f"{ttl_ms} {len(head.encode())} {head}{tail}"


def granted_at(joined: tuple[float, int], server_us: int) -> float:
    """When a grant made at the server's ``server_us`` happened on our monotonic clock, no
    later than it did (so the lock's local deadline errs on the safe side): the last time we
    were seen in line (``joined``: our clock before that call, the server's during it) plus
    the server's time since, at most now."""
    local, server = joined
    return min(time.monotonic(), max(local, local + (server_us - server) / 1e6))


def waiting_in_line(attempt: Attempt, max_block: float) -> Plan[Grant | None]:
    """The plan of an acquire where waiters wait in line and a release hands the lock over:
    take it, or join the line and block for the grant until ``attempt.give_up``; then leave
    the line (keeping a grant made meanwhile). Not blocking: one try, never in line."""
    started = time.monotonic()
    give_up = attempt.give_up if attempt.blocking else started
    key, token, timeout = attempt.key, attempt.token, attempt.timeout
    joined: tuple[float, int] | None = None  # when we were last seen in line: local, server µs
    checked = False  # whether a refused try has checked the name's limit
    try:
        while True:
            at = time.monotonic()
            stay = min(give_up - at, max_block)
            value = attempt.value()
            turn = yield Call(
                "take_or_queue", (key, value, timeout, token, stay, attempt.fair, attempt.limit)
            )
            if not turn.fence and stay > 0:
                joined = (at, turn.server_us)
            if turn.held_limit or not (turn.fence or checked):  # the name held with another limit?
                checked = True  # (a refused limit=1 try reads the name once)
                yield from checking_limit(attempt, -turn.held_limit)
            if not turn.fence and stay > 0:
                block = max(MIN_BLOCK, stay if turn.expires_in is None else min(stay, turn.expires_in))
                turn = yield Call("await_grant", (key, token, block, timeout, attempt.limit))
            elif not turn.fence and joined is not None:
                turn = yield Call("leave", (key, token, timeout, attempt.limit))
            if turn and turn.fence:
                if turn.value is None:
                    return Grant(value, turn.fence, at)
                # handed over by the server: the lease started when the grant was made
                return Grant(
                    turn.value, turn.fence, granted_at(joined, turn.server_us) if joined else started
                )
            if stay <= 0:
                return None
    except GeneratorExit:
        raise  # abandoned unfinished (the driver went away): nothing can be sent now
    except BaseException as exc:  # a cache error, or a soft time limit, signal or cancellation
        if joined is not None or not isinstance(exc, Exception):  # in line, or a reply cut off
            yield from giving_up_place(attempt)
        raise


def giving_up_place(attempt: Attempt) -> Plan[None]:
    """Leave the line after an error: a grant made meanwhile is passed on at once, not kept by
    a waiter that will never use it — also one whose reply the error cut off (the server had
    popped it: the lock holds this token). Never raises: the error that got us here counts."""
    try:
        turn = yield Call("leave", (attempt.key, attempt.token, attempt.timeout, attempt.limit))
        yield from giving_back(attempt, turn.value if turn is not None else None)
    except Exception:
        logger.warning(
            "lock %s: could not leave the line; its place lapses", shown(attempt.name), exc_info=True
        )
