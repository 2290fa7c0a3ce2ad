"""One sync contender process for the async tests: take the lock ``TIMES`` times, blocking.

python -m tests.thrice CACHE NAME TIMES HOLD

Prints ``ready`` once Django is set up, then reads one line (the go) from stdin, then takes
the lock ``TIMES`` times (each held ``HOLD`` s) and prints the intervals it held it as JSON
``[[start, end], ...]`` (monotonic clock, system-wide on Linux).
"""

import json
import sys
import time

import django


def main(cache: str, name: str, times: int, hold: float) -> None:
    from tasklock import Lock

    print("ready", flush=True)
    sys.stdin.readline()
    intervals = []
    for _ in range(times):
        held = Lock(name, timeout=30, cache=cache)
        assert held.acquire(blocking=True, wait=60), "waited in vain"
        began = time.monotonic()
        time.sleep(hold)
        intervals.append((began, time.monotonic()))
        assert held.release(), "the lock was lost while held"
    print(json.dumps(intervals), flush=True)


if __name__ == "__main__":
    django.setup()
    cache, name, times, hold = sys.argv[1:]
    main(cache, name, int(times), float(hold))
