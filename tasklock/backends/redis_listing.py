"""Listing the locks of a Redis server: ``SCAN`` for the keys, one script for their values and TTLs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from .base import Stored, text
from .redis_clients import LuaScript

#: keys asked of each SCAN step when listing locks
SCAN_COUNT = 1000

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
READ = LuaScript(READ_BODY % b"KEYS")


def glob_escape(text: str) -> str:
    """``text`` as a literal inside a ``SCAN MATCH`` pattern."""
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


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


def stored_replies(keys: list[str], replies: list[Any]) -> list[Stored]:
    """``Stored`` entries from alternating ``GET``/``PTTL`` replies of ``keys``."""
    return [
        Stored(key, text(raw), ttl / 1000 if ttl >= 0 else None)
        for key, raw, ttl in zip(keys, replies[::2], replies[1::2], strict=True)
    ]
