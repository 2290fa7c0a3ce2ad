"""How many wait in line for a lock: the admin's "waiting" column, for the rows of one page.

Only Redis-family caches keep a line (``backends.redis_line``): a waiter's ticket in
``<lock key> tickets`` says until when it is alive, and is renewed while it waits. A ticket
whose waiter died stays in the hash until a release skips it, so the count reads the tickets'
alive times against the server's clock, in one script call (one per lock on a cluster, where
each lock's line lives in its own slot). Elsewhere waiters poll and nobody can count them.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..backends import get_backend
from ..backends.redis import SLOTTED, RedisBackend
from ..backends.redis_clients import LuaScript, is_cluster
from ..conf import conf
from .inventory import cache_errors

#: KEYS: tickets hashes. The number of tickets in each that are alive at the server's time.
COUNT_ALIVE = LuaScript(
    b"""
local now = redis.call('time')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local counts = {}
for i, key in ipairs(KEYS) do
  local alive = 0
  for _, ticket in ipairs(redis.call('hvals', key)) do
    if (tonumber(string.match(ticket, '^(%d+) ')) or 0) >= now_ms then alive = alive + 1 end
  end
  counts[i] = alive
end
return counts
"""
)


def waiting(names: Sequence[str], cache: str | None = None) -> list[int] | None:
    """How many live waiters each lock of ``names`` has in ``cache``'s line, in their order;
    None when the cache keeps no line (memcached, the database: waiters poll). A cache error
    is a ``LockError``."""
    backend = get_backend(cache)
    if not isinstance(backend, RedisBackend):
        return None
    # each name's two lines: for the lock, and for a slot of it (a limited name)
    keys = [backend.key(name) for name in names]
    tickets = [backend.companions(key, limit)[2] for key in keys for limit in (1, SLOTTED)]
    if not tickets:
        return []
    with cache_errors(backend, cache or conf.CACHE, "counting waiters"):
        if is_cluster(backend.client):
            counts = [int(COUNT_ALIVE((key,), client=backend.client)[0]) for key in tickets]
        else:
            counts = [int(count) for count in COUNT_ALIVE(tickets, client=backend.client)]
    return [plain + slotted for plain, slotted in zip(counts[::2], counts[1::2], strict=True)]
