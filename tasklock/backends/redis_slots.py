"""A limited name (``limit`` > 1) on Redis: one script per change of its record.

The record (``values.slots``) holds each holder's slot with a deadline by the server's clock;
every script drops the slots past their deadline before it looks. A slot is taken the way a
lock is (``SLOT_TAKE_OR_QUEUE``: blocked waiters wait in a line of their own), and a freed slot
goes straight to the first live waiter in line (``refill``), as a released lock does.
KEYS are the line scripts' (``redis_line``): the key, its line, its tickets, the fencing
counter where the backend fences.
"""

from __future__ import annotations

from .redis_clients import LuaScript
from .redis_line import LINE

#: ARGV as ``TAKE_OR_QUEUE``'s, then the limit. As its reply, or {3, the limit the name is
#: held with} when that is another (1: a plain holder) — checked before joining the line.
#: Full: {0, ms until the first slot's deadline, server µs}.
SLOT_TAKE_OR_QUEUE = LuaScript(
    LINE
    + b"""
local grant = redis.call('lpop', KEYS[3] .. ' ' .. ARGV[3])
if grant then return {2, grant} end
local seconds, micros, now_ms, time = clock()
local limit = tonumber(ARGV[8])
local stored = redis.call('get', KEYS[1])
local slots, wait_ms = {}, -1
if stored then
  local record = load_record(stored)
  if not record then
    if string.sub(stored, 1, 9) == '{"token":' then return {3, 1} end
    slots, wait_ms = nil, redis.call('pttl', KEYS[1])
  elseif tonumber(record.limit) ~= limit then
    return {3, tonumber(record.limit)}
  else
    slots = live_slots(record, now_ms)
  end
end
if slots and #slots < limit then
  local first = ARGV[6] == 'fair' and first_alive(now_ms)
  if not first or first == ARGV[3] then
    slots[#slots + 1] = {now_ms + tonumber(ARGV[2]), ARGV[1]}
    save_record(limit, slots, now_ms)
    leave_line(ARGV[3])
    return {1, fence(time)}
  end
elseif slots then
  for _, slot in ipairs(slots) do
    local left = slot[1] - now_ms
    if wait_ms < 0 or left < wait_ms then wait_ms = left end
  end
end
join_line(now_ms)
return {0, wait_ms, string.format('%d', seconds * 1000000 + micros)}
""",
)

#: KEYS: the key, then the fencing counter where the backend fences; ARGV: value, TTL ms,
#: limit. One try at a slot, never in line: as ``add`` (the fencing token, or 1, if taken; 0
#: if full), or minus the limit the name is held with when that is another.
SLOT_ADD = LuaScript(
    LINE
    + b"""
local _, _, now_ms, time = clock()
local limit = tonumber(ARGV[3])
local stored = redis.call('get', KEYS[1])
local slots = {}
if stored then
  local record = load_record(stored)
  if not record then
    if string.sub(stored, 1, 9) == '{"token":' then return -1 end
    return 0
  end
  if tonumber(record.limit) ~= limit then return -tonumber(record.limit) end
  slots = live_slots(record, now_ms)
  if #slots >= limit then return 0 end
end
slots[#slots + 1] = {now_ms + tonumber(ARGV[2]), ARGV[1]}
save_record(limit, slots, now_ms)
if KEYS[2] then return next_token(KEYS[2], time) end
return 1
""",
)

#: ARGV: the holder's value. Free its live slot (1), or 0 if it holds none; the free slots go
#: to the live waiters in line.
SLOT_RELEASE = LuaScript(
    LINE
    + b"""
local _, _, now_ms = clock()
local record = load_record(redis.call('get', KEYS[1]))
if not record then return 0 end
local slots, found = {}, false
for _, slot in ipairs(live_slots(record, now_ms)) do
  if slot[2] == ARGV[1] then found = true else slots[#slots + 1] = slot end
end
if not found then return 0 end
refill(tonumber(record.limit), slots, now_ms)
return 1
""",
)

#: ARGV: the holder's value, its new value, TTL ms. Rewrite its live slot with a deadline TTL
#: from now (1), or 0 if it holds none.
SLOT_EXTEND = LuaScript(
    LINE
    + b"""
local _, _, now_ms = clock()
local record = load_record(redis.call('get', KEYS[1]))
if not record then return 0 end
local slots, found = live_slots(record, now_ms), false
for _, slot in ipairs(slots) do
  if slot[2] == ARGV[1] then
    slot[1], slot[2], found = now_ms + tonumber(ARGV[3]), ARGV[2], true
  end
end
if not found then return 0 end
save_record(tonumber(record.limit), slots, now_ms)
return 1
""",
)
