"""The demo's score store: it refuses a write whose fencing token is not larger than the last
one it accepted for that game, so a holder that lost its lock cannot overwrite a newer score.

This check lives in the store, not in tasklock: it is what a user writes next to their data
(a column compared in the UPDATE's WHERE, a Lua script, a conditional put).
"""

from __future__ import annotations

import redis
from django.conf import settings

#: set the score only if the token is larger than the last accepted one, in one atomic step
_SAVE = """
local last = tonumber(redis.call('hget', KEYS[1], 'token') or '0')
if tonumber(ARGV[1]) <= last then return 0 end
redis.call('hset', KEYS[1], 'token', ARGV[1], 'score', ARGV[2])
return 1
"""


class ScoreStore:
    """Scores of one demo run, under ``<DEMO_KEY_PREFIX>:run:<run_id>:score:<game>``."""

    def __init__(self, url: str, run_id: str) -> None:
        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.prefix = f"{settings.DEMO_KEY_PREFIX}:run:{run_id}:score:"
        self._save = self.client.register_script(_SAVE)

    def save(self, game_id: int, score: str, token: int) -> bool:
        """Store ``score`` if ``token`` is newer than the last accepted write; True if stored."""
        return bool(self._save(keys=[f"{self.prefix}{game_id}"], args=[token, score]))

    def last(self, game_id: int) -> tuple[str | None, int]:
        """The stored score and the token it was written with (0 before any write)."""
        found = self.client.hgetall(f"{self.prefix}{game_id}")
        return found.get("score"), int(found.get("token", 0))

    def delete(self, games: list[int]) -> None:
        if games:
            self.client.delete(*(f"{self.prefix}{game_id}" for game_id in games))
