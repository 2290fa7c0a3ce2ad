"""The DatabaseCache trap, measured: Django's own ``add`` on an expired row SELECTs then
UPDATEs, so several processes "add" the same key; tasklock's adapter deletes the expired row
first and INSERTs, which the primary key makes atomic."""

import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from django.core.cache import caches
from django.db import connection
from django.utils import timezone

from tasklock.backends import get_backend
from tests.starting_line import start_together

RACERS = 6
ROUNDS = 15


def plant_expired_rows(keys: list[str]) -> None:
    past = connection.ops.adapt_datetimefield_value(timezone.now() - timedelta(seconds=60))
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO tasklock_cache (cache_key, value, expires) VALUES (%s, %s, %s)",
            [(key, "expired", past) for key in keys],
        )


def race(tmp_path, mode: str) -> list[int]:
    """Winners per round."""
    run = uuid.uuid4().hex
    names = [f"race:{run}:{number}" for number in range(ROUNDS)]
    if mode == "django":
        keys = [caches["database"].make_key(name) for name in names]
    else:
        keys = [get_backend("database").key(name) for name in names]
    plant_expired_rows(keys)
    line, outputs = tmp_path / f"{mode}-starting-line", [tmp_path / f"{mode}-{i}.json" for i in range(RACERS)]
    line.mkdir()
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.racers", mode, run, str(line), str(ROUNDS), "0.1", str(out)],
            env=os.environ.copy(),
        )
        for out in outputs
    ]
    start_together(line, processes)
    assert all(process.wait(60) == 0 for process in processes)
    wins = [json.loads(out.read_text()) for out in outputs]
    return [sum(column) for column in zip(*wins, strict=True)]


@pytest.mark.usefixtures("database_cache")
def test_djangos_add_races_and_tasklocks_does_not(tmp_path):
    django_winners = race(tmp_path, "django")
    tasklock_winners = race(tmp_path, "tasklock")
    print(f"Django add winners per round: {django_winners}; tasklock: {tasklock_winners}")
    assert max(django_winners) > 1, "the trap did not show: the race test cannot fail"
    assert tasklock_winners == [1] * ROUNDS
