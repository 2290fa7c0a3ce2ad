"""One racer process: at agreed moments, "add" an expired database-cache key.

python -m tests.racers django|tasklock RUN START_AT ROUNDS INTERVAL OUT
"""

import json
import sys
import time

import django


def main(mode: str, run: str, start_at: float, rounds: int, interval: float, out: str) -> None:
    from django.core.cache import caches

    from tasklock.backends import get_backend

    cache, backend = caches["database"], get_backend("database")
    wins = []
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
    mode, run, start_at, rounds, interval, out = sys.argv[1:]
    main(mode, run, float(start_at), int(rounds), float(interval), out)
