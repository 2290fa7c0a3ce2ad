"""One contender process: take the lock over and over, write down when it held it.

python -m tests.contenders CACHE NAME START_AT SECONDS HOLD OUT [--allow-locmem]
"""

import json
import sys
import time

import django


def main(cache: str, name: str, start_at: float, seconds: float, hold: float, out: str) -> None:
    from tasklock import Lock

    intervals = []
    while time.time() < start_at:
        time.sleep(0.001)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        held = Lock(name, timeout=10, cache=cache)
        if held.acquire(blocking=True, wait=1):
            began = time.monotonic()
            time.sleep(hold)
            intervals.append((began, time.monotonic()))
            held.release()
    with open(out, "w") as file:
        json.dump(intervals, file)


if __name__ == "__main__":
    django.setup()
    from django.test.utils import override_settings

    args = sys.argv[1:]
    allow = "--allow-locmem" in args
    cache, name, start_at, seconds, hold, out = [a for a in args if a != "--allow-locmem"]
    with override_settings(TASKLOCK={"ALLOW_PROCESS_LOCAL_CACHE": allow}):
        main(cache, name, float(start_at), float(seconds), float(hold), out)
