"""What a cache family must do atomically for tasklock."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from ..conf import conf
from ..keys import cache_key


class LockBackend(ABC):
    """One adapter per cache family, wrapping one cache instance.

    Values are the holder's encoded metadata; a holder owns a key while the stored value
    equals the one it wrote, so every owner check is a full-value compare.
    """

    family: ClassVar[str]
    #: exceptions of the cache's client; tasklock re-raises them as ``LockError``
    errors: ClassVar[tuple[type[BaseException], ...]] = ()
    #: the longest sleep between two polls of a blocking acquire
    max_poll: ClassVar[float] = 0.01

    def __init__(self, cache: Any) -> None:
        self.cache = cache

    def make_key(self, raw: str) -> str:
        return self.cache.make_key(raw)

    def key(self, name: str) -> str:
        """The full cache key of a lock name, inside ``TASKLOCK["KEY_PREFIX"]``."""
        return cache_key(name, conf.KEY_PREFIX, self.make_key)

    @abstractmethod
    def add(self, key: str, value: str, timeout: float) -> bool:
        """Store ``value`` only if ``key`` is absent; True if stored."""

    @abstractmethod
    def get(self, key: str) -> str | None:
        """The stored value, or None when the key is absent or expired."""

    @abstractmethod
    def delete_if(self, key: str, value: str) -> bool:
        """Delete ``key`` only if it still holds ``value``; True if deleted."""

    @abstractmethod
    def replace_if(self, key: str, value: str, new_value: str, timeout: float) -> bool:
        """Store ``new_value`` with a new TTL only if ``key`` still holds ``value``."""

    def wait(self, key: str, remaining: float, pause: float) -> None:
        """Block until ``key`` may be free: at most ``remaining`` s; pollers sleep ``pause``."""
        time.sleep(min(pause, remaining))
