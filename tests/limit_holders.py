"""Holder processes of a limited name (issue 19), for tests/test_limit_contention.py.

python -m tests.limit_holders contend CACHE NAME LIMIT STARTING_LINE ACQUIRES HOLD OUT
    ``ACQUIRES`` x (blocking acquire with ``limit=LIMIT``, hold ``HOLD`` s, release), all
    processes started together (``tests.starting_line``); writes its ``[start, end]`` holds
    (monotonic clock, system-wide on Linux), recorded inside each hold, to ``OUT``.
python -m tests.limit_holders hold CACHE NAME LIMIT TIMEOUT
    One non-blocking acquire (not renewed); prints one JSON line (held, the monotonic time
    just before the acquire, the ``tasklock`` module it ran, the error if one was raised),
    then waits for a line on stdin (or its end), releases and prints ``{"released": ...}``.

``hold`` imports nothing of tasklock but ``Lock`` and passes ``limit`` only when it is not 1,
so that it runs the tasklock of before ``limit=`` too (the rolling-upgrade test).
"""

import json
import sys
import time
from pathlib import Path

import django


def contend(cache: str, name: str, limit: int, line: str, acquires: int, hold: float, out: str) -> None:
    from tasklock import Lock
    from tests.starting_line import wait_for_start

    warm_up = Lock(name, 5, cache, limit=limit)  # connect, load the scripts: before the start
    if warm_up.acquire():  # (one try: refused or not, nothing is recorded before the start)
        warm_up.release()
    holds = []
    wait_for_start(Path(line))
    for _ in range(acquires):
        held = Lock(name, 30, cache, limit=limit)
        assert held.acquire(blocking=True, wait=60), "no slot within 60 s"
        began = time.monotonic()
        time.sleep(hold)
        holds.append((began, time.monotonic()))
        assert held.release(), "the slot was lost while held"
    Path(out).write_text(json.dumps(holds))


def say(**answer: object) -> None:
    print(json.dumps(answer), flush=True)


def hold(cache: str, name: str, limit: int, timeout: float) -> None:
    import tasklock
    from tasklock import Lock

    options = {"limit": limit} if limit != 1 else {}
    held, error = False, None
    at = time.monotonic()
    try:
        lock = Lock(name, timeout, cache, **options)
        held = lock.acquire()
    except Exception as exc:  # reported to the parent, which checks it
        error = f"{type(exc).__name__}: {exc}"
    say(held=held, at=at, module=tasklock.__file__, error=error)
    sys.stdin.readline()
    say(released=held and lock.release())


if __name__ == "__main__":
    django.setup()
    command, cache, name, limit, *rest = sys.argv[1:]
    if command == "contend":
        line, acquires, hold_seconds, out = rest
        contend(cache, name, int(limit), line, int(acquires), float(hold_seconds), out)
    else:
        hold(cache, name, int(limit), float(rest[0]))
