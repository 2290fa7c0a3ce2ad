"""One publisher process: delay() one until_and_while_executing key over and over.

python -m tests.unique_racers ITEM RUN START_AT SECONDS OUT — writes the task ids it got.
"""

import json
import sys
import time

import django


def main(item: str, run_id: str, start_at: float, seconds: float, out: str) -> None:
    from tests.unique_tasks import rebuild_both

    while time.time() < start_at:
        time.sleep(0.001)
    ids = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ids.add(rebuild_both.delay(item, run_id, 0.2).id)
        time.sleep(0.005)
    with open(out, "w") as file:
        json.dump(sorted(ids), file)


if __name__ == "__main__":
    django.setup()
    item, run_id, start_at, seconds, out = sys.argv[1:]
    main(item, run_id, float(start_at), float(seconds), out)
