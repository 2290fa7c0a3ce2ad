"""One contender process: take the lock over and over, write down when it held it.

python -m tests.contenders CACHE NAME START_AT SECONDS HOLD OUT [--allow-locmem] [--lease=S] [--once] [--fair]

Each interval is ``[start, end, fencing_token]`` (monotonic clock, system-wide on Linux).
With ``--lease`` the lock renews a lease of that many seconds (``HOLD`` may outlast it);
with ``--once`` a contender stops after holding the lock once, so it changes hands; with
``--fair`` it waits in line as a fair lock.
"""

import json
import sys
import time

import django


def main(
    cache: str,
    name: str,
    start_at: float,
    seconds: float,
    hold: float,
    out: str,
    lease: float,
    once: bool,
    fair: bool,
) -> None:
    from tasklock import Lock

    intervals = []
    while time.time() < start_at:
        time.sleep(0.001)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (once and intervals):
        held = Lock(name, timeout=lease or 10, cache=cache, renew=bool(lease), fair=fair)
        if held.acquire(blocking=True, wait=1):
            began = time.monotonic()
            time.sleep(hold)
            intervals.append((began, time.monotonic(), held.fencing_token))
            assert held.release(), "the lock was lost while held"
    with open(out, "w") as file:
        json.dump(intervals, file)


if __name__ == "__main__":
    django.setup()
    from django.test.utils import override_settings

    flags = [a for a in sys.argv[1:] if a.startswith("--")]
    cache, name, start_at, seconds, hold, out = [a for a in sys.argv[1:] if not a.startswith("--")]
    lease = next((float(f.partition("=")[2]) for f in flags if f.startswith("--lease=")), 0.0)
    with override_settings(TASKLOCK={"ALLOW_PROCESS_LOCAL_CACHE": "--allow-locmem" in flags}):
        once, fair = "--once" in flags, "--fair" in flags
        main(cache, name, float(start_at), float(seconds), float(hold), out, lease, once, fair)
