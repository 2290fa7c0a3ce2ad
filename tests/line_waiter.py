"""One waiter process: print its token, wait in line for the lock, print when it got it.

python -m tests.line_waiter CACHE NAME HOLD [--fair]

Prints ``token <token>`` before it asks, then ``acquired <monotonic time>`` once it holds the
lock, which it releases after ``HOLD`` seconds.
"""

import sys
import time

import django


def main(cache: str, name: str, hold: float, fair: bool) -> None:
    from tasklock import Lock

    held = Lock(name, timeout=30, cache=cache, fair=fair)
    print("token", held.token, flush=True)
    assert held.acquire(blocking=True, wait=60), "waited in vain"
    print("acquired", time.monotonic(), flush=True)
    time.sleep(hold)
    assert held.release(), "the lock was lost while held"


if __name__ == "__main__":
    django.setup()
    cache, name, hold = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(cache, name, float(hold), "--fair" in sys.argv)
