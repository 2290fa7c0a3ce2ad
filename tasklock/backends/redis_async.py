"""The async face of a Redis-family cache: the same scripts, keys and arguments as the
synchronous adapter (``redis``, ``redis_line``), sent on an asyncio client of the same
servers (``redis_async_clients``); a waiter in line blocks in an async ``BLPOP``.

Each method is the synchronous adapter's with ``await``: it takes the keys and arguments
from that adapter (``line_keys``, ``grant_list``, ``queue_args``) and parses the reply as it
does (``Turn``, ``text``).
"""

from __future__ import annotations

from typing import Any

from .asynchronous import AsyncBackend
from .base import text
from .redis import _ACQUIRE, _EXTEND, _RELEASE, SLOTTED, RedisBackend, milliseconds, queue_args
from .redis_line import LEAVE, Turn
from .redis_slots import SLOT_ADD, SLOT_EXTEND, SLOT_RELEASE


class AsyncRedisBackend(AsyncBackend):
    """One Redis server through an asyncio client ``client`` of ``sync``'s server."""

    sync: RedisBackend

    def __init__(self, sync: RedisBackend, client: Any) -> None:
        super().__init__(sync)
        self.client = client

    async def add(self, key: str, value: str, timeout: float) -> int:
        keys = (key, self.sync._fence)
        return await _ACQUIRE.acall(keys, (value, milliseconds(timeout)), client=self.client)

    async def get(self, key: str) -> str | None:
        return text(await self.client.get(key))

    async def delete_if(self, key: str, value: str) -> bool:
        return bool(await _RELEASE.acall(self.sync.line_keys(key), (value,), client=self.client))

    async def replace_if(self, key: str, value: str, new_value: str, timeout: float) -> bool:
        args = (value, new_value, milliseconds(timeout))
        return bool(await _EXTEND.acall((key,), args, client=self.client))

    async def add_slot(self, key: str, value: str, timeout: float, limit: int) -> int:
        keys = (key, self.sync._fence) if self.sync.fences else (key,)
        return int(await SLOT_ADD.acall(keys, (value, milliseconds(timeout), limit), client=self.client))

    async def delete_slot(self, key: str, value: str) -> bool:
        keys = self.sync.line_keys(key, SLOTTED)
        return bool(await SLOT_RELEASE.acall(keys, (value,), client=self.client))

    async def replace_slot(self, key: str, value: str, new_value: str, timeout: float) -> bool:
        args = (value, new_value, milliseconds(timeout))
        return bool(await SLOT_EXTEND.acall(self.sync.line_keys(key, SLOTTED), args, client=self.client))

    async def take_or_queue(
        self, key: str, value: str, timeout: float, token: str, stay: float, fair: bool, limit: int = 1
    ) -> Turn:
        script, args = queue_args(value, timeout, token, stay, fair, limit)
        return Turn.of(await script.acall(self.sync.line_keys(key, limit), args, client=self.client))

    async def await_grant(
        self, key: str, token: str, seconds: float, timeout: float, limit: int = 1
    ) -> Turn | None:
        grant = await self.client.blpop([self.sync.grant_list(key, token, limit)], timeout=seconds)
        return None if grant is None else Turn.granted(grant[1])

    async def leave(self, key: str, token: str, timeout: float, limit: int = 1) -> Turn | None:
        grant = await LEAVE.acall(self.sync.line_keys(key, limit), (token, limit), client=self.client)
        return None if grant is None else Turn.granted(grant)


class AsyncRedisClusterBackend(AsyncRedisBackend):
    """A Redis Cluster through an asyncio cluster client: no fencing counter, so ``add`` is a
    plain ``SET NX PX``, as the synchronous cluster adapter's."""

    async def add(self, key: str, value: str, timeout: float) -> int:
        return int(bool(await self.client.set(key, value, nx=True, px=milliseconds(timeout))))
