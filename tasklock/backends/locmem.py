"""``LocMemCache``, only when ``ALLOW_PROCESS_LOCAL_CACHE`` lets it through.

Its ``add`` is atomic inside one process and invisible to every other: fit for a
single-process test suite, never for workers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, ClassVar

from .base import LockBackend


class LocMemBackend(LockBackend):
    family = "locmem"
    #: serialises owner checks; every tasklock write to a LocMemCache goes through it
    compare_lock: ClassVar[threading.Lock] = threading.Lock()

    @staticmethod
    def key_function(cache: Any) -> Callable[[str], str]:
        return str  # unchanged: the cache's own methods apply its key function

    def server(self, key: str | None) -> str:
        return "this process's memory"

    def add(self, key: str, value: str, timeout: float) -> bool:
        with self.compare_lock:
            return self.cache.add(key, value, timeout)

    def get(self, key: str) -> str | None:
        return self.cache.get(key)

    def delete_if(self, key: str, value: str) -> bool:
        with self.compare_lock:
            if self.cache.get(key) != value:
                return False
            return self.cache.delete(key)

    def replace_if(self, key: str, value: str, new_value: str, timeout: float) -> bool:
        with self.compare_lock:
            if self.cache.get(key) != value:
                return False
            self.cache.set(key, new_value, timeout)
            return True
