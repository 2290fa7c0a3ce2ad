"""One racer process: at agreed moments, "add" an expired database-cache key.

python -m tests.racers django|tasklock RUN STARTING_LINE ROUNDS INTERVAL OUT
"""

import json
import sys
import time
from pathlib import Path

import django

from tests.starting_line import wait_for_start


def main(mode: str, run: str, line: str, rounds: int, interval: float, out: str) -> None:
    from django.core.cache import caches

    from tasklock.backends import get_backend

    cache, backend = caches["database"], get_backend("database")
    wins = []
    cache.get(f"race:{run}:warm-up")  # connect to the database before the start, not in round 0
    start_at = wait_for_start(Path(line))
    for number in range(rounds):
        while time.time() < start_at + number * interval:
            time.sleep(0.0005)
        key = f"race:{run}:{number}"
        if mode == "django":
            wins.append(cache.add(key, "mine", 30))
        else:
            wins.append(bool(backend.add(backend.key(key), "mine", 30)))  # a fencing token when added
    with open(out, "w") as file:
        json.dump(wins, file)


if __name__ == "__main__":
    django.setup()
    mode, run, line, rounds, interval, out = sys.argv[1:]
    main(mode, run, line, int(rounds), float(interval), out)
