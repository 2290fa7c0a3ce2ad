"""Explicit waits for the tests: poll for the state a test checks, never sleep and hope."""

from __future__ import annotations

import time
from collections.abc import Callable

#: long enough for a loaded 2-core machine; only a real hang waits this long
SECONDS = 60


def wait_until(condition: Callable[[], object], what: str, seconds: float = SECONDS) -> None:
    """Return as soon as ``condition()`` is true; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds} s")
        time.sleep(0.005)
