"""Cache keys from lock names, inside ``TASKLOCK["KEY_PREFIX"]``.

A key is hashed only when the full key would be too long for memcached or the database
cache (250 bytes) or has white space or control characters; the name itself is kept whole
in the holder's metadata.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

MAX_KEY_BYTES = 250
#: a space or control character: memcached refuses such keys
UNSAFE_KEY_CHAR = re.compile(r"[\x00-\x20\x7f]")
#: the first character of a hashed key's name part (and of tasklock's own bookkeeping keys)
HASH_MARK = "#"


def _is_safe(key: str) -> bool:
    return len(key.encode()) <= MAX_KEY_BYTES and UNSAFE_KEY_CHAR.search(key) is None


def cache_key(name: str, prefix: str, make_key: Callable[[str], str]) -> str:
    """The full cache key for a lock name, made with the cache's own key function."""
    if not name.startswith(HASH_MARK):
        key = make_key(f"{prefix}:{name}")
        if _is_safe(key):
            return key
    digest = hashlib.sha256(name.encode()).hexdigest()
    return make_key(f"{prefix}:{HASH_MARK}{digest}")
