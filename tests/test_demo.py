"""``manage.py demo`` end to end: two real prefork workers on a real Redis, as a user runs it."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
#: a summary row: lock, sent, ran, skipped, retried, most at once, result
ROW = re.compile(r"^\s+(game:\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\S.*)$", re.MULTILINE)

pytestmark = pytest.mark.usefixtures("redis_server")


def run_demo(redis_url: str, tmp_path: Path, *options: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DJANGO_SETTINGS_MODULE": "demo_project.settings",
        "DEMO_DATABASE": str(tmp_path / "demo.sqlite3"),
    }
    return subprocess.run(
        [sys.executable, "manage.py", "demo", *options],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_every_game_had_one_holder_at_a_time(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {match[0]: match[1:] for match in ROW.findall(done.stdout)}
    assert sorted(rows) == ["game:1", "game:2", "game:3"], done.stdout
    for lock_name, (sent, ran, skipped, _retried, at_once, result) in rows.items():
        assert at_once == "1", (lock_name, done.stdout)
        assert result == "OK", (lock_name, done.stdout)
        assert int(ran) >= 1
        assert int(ran) + int(skipped) == int(sent)
    assert "Workers stopped." in done.stdout
    assert re.search(r"game:4 was free again \d+ ms later", done.stdout), done.stdout
    assert "writes with its older token" in done.stdout and "refused by the store" in done.stdout
    assert "The store keeps '3-1'." in done.stdout


def test_demo_on_a_shared_redis_keeps_to_its_own_prefix(tmp_path):
    url = f"redis://{os.environ['TASKLOCK_TEST_REDIS']}/0"
    client = redis.Redis.from_url(url)
    client.set("someone-else:key", "keep me")
    before = set(client.scan_iter())

    done = run_demo(url, tmp_path)

    assert_every_game_had_one_holder_at_a_time(done)
    assert "private" not in done.stdout
    assert client.get("someone-else:key") == b"keep me"
    created = set(client.scan_iter()) - before
    assert all(key.startswith(b"tasklock-demo:") for key in created), created
    # only the queue's bindings and the fencing counter stay: records, results, messages are gone
    assert {key for key in created if b"_kombu.binding" not in key} <= {b"tasklock-demo:1:tasklock fence"}
    client.delete("someone-else:key")


def test_demo_starts_a_private_redis_when_none_answers(tmp_path):
    nobody = f"redis://{os.environ['TASKLOCK_TEST_DOWN']}/0"

    done = run_demo(nobody, tmp_path)

    assert "starting a private redis-server" in done.stdout
    assert_every_game_had_one_holder_at_a_time(done)


def test_demo_runs_the_same_locked_jobs_as_django_tasks_on_db_worker(tmp_path):
    """Issue 21: ``--django-tasks`` sends the burst as Django tasks to two db_workers, on a
    fresh database (the command migrates django-tasks-db's table itself)."""
    url = f"redis://{os.environ['TASKLOCK_TEST_REDIS']}/0"
    done = run_demo(url, tmp_path, "--django-tasks")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Starting 2 db_worker processes" in done.stdout
    rows = {match[0]: match[1:] for match in ROW.findall(done.stdout)}
    assert sorted(rows) == ["game:1", "game:2", "game:3"], done.stdout
    for lock_name, (sent, ran, skipped, _retried, at_once, result) in rows.items():
        assert (at_once, result) == ("1", "OK"), (lock_name, done.stdout)
        assert int(ran) + int(skipped) == int(sent) == 7
