"""``limit=N`` across processes (issue 19), on real servers.

An overlap detector that does not trust the lock: each holder process writes down when it
held a slot (CLOCK_MONOTONIC is system-wide on Linux; each interval is recorded inside the
hold, after the acquire returned and before the release is sent), and a sweep over every
interval of every process counts the holders at each instant. Then a SIGKILLed holder, and a
rolling upgrade: ``limit=1`` beside a process that runs the tasklock of before ``limit=``.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tasklock import Lock, LockError
from tests.conftest import serving
from tests.starting_line import start_together

ROOT = Path(__file__).resolve().parent.parent
PROCESSES, ACQUIRES, LIMIT = 9, 25, 3
#: each hold: long beside a handover on a loaded 2-core machine (a few ms, tens when the
#: machine stalls a process), which the mean holders below counts as a free slot; the whole
#: run stays well under a minute per backend
HOLD = 0.02
#: where a waiter is handed a freed slot by the release (the Redis line): the mean number of
#: holders while any slot is held must reach this (3 = every slot always used)
REDIS_MEAN_HOLDERS = 2.2
REDIS_FAMILY = {"default", "redis", "valkey", "cluster", "django_cluster", "valkey_cluster"}
#: the last commit of main before ``limit=`` (issue 19): "today's code path" of the upgrade test
BEFORE_LIMIT = "dd9de58"
#: each process's ``[start, end]`` holds
Holds = list[list[tuple[float, float]]]


def _name(what: str) -> str:
    return f"limit-{what}:{uuid.uuid4().hex}"


# -- the overlap detector ----------------------------------------------------------------------


def sweep(per_process: Holds) -> tuple[int, float]:
    """The most holds at one instant, and the mean number of holders while any is held (the
    sum of the holds over the time covered by at least one). Touching holds do not overlap."""
    events = sorted((t, delta) for holds in per_process for s, e in holds for t, delta in ((s, 1), (e, -1)))
    held = most = 0
    covered, since = 0.0, 0.0
    for at, delta in events:  # at one instant, ends (-1) sort before starts (+1)
        if held == 0 and delta > 0:
            since = at
        held += delta
        most = max(most, held)
        if held == 0:
            covered += at - since
    total = sum(e - s for holds in per_process for s, e in holds)
    return most, total / covered if covered else 0.0


def test_sweep_counts_holders_at_each_instant():
    assert sweep([[(0, 2), (3, 4)], [(1, 3)], [(1.5, 2.5)]]) == (3, 6 / 4)
    assert sweep([[(0, 1)], [(1, 2)]]) == (1, 1.0)  # one ends as the other starts
    assert sweep([[(0, 1)], [(0, 1)], [(5, 6)]]) == (2, 1.5)


def holders(tmp_path: Path, cache: str, limit: int, acquires: int = ACQUIRES) -> Holds:
    """``PROCESSES`` processes started together, each ``acquires`` x (blocking acquire of one
    name with ``limit``, hold ``HOLD``, release): their holds."""
    name, line = _name("contention"), tmp_path / f"line-{uuid.uuid4().hex}"
    line.mkdir()
    outputs = [tmp_path / f"holds-{uuid.uuid4().hex}.json" for _ in range(PROCESSES)]
    command = [sys.executable, "-m", "tests.limit_holders", "contend", cache, name, str(limit), str(line)]
    command += [str(acquires), str(HOLD)]
    processes = [subprocess.Popen([*command, str(out)], cwd=ROOT, env=os.environ.copy()) for out in outputs]
    try:
        start_together(line, processes)
        for process in processes:
            assert process.wait(120) == 0, "a holder process failed (its error is above)"
    finally:
        for process in processes:
            process.kill()
    return [[tuple(hold) for hold in json.loads(out.read_text())] for out in outputs]


def check_limit_kept(cache: str, per_process: Holds) -> None:
    most, mean = sweep(per_process)
    print(f"{cache}: {sum(map(len, per_process))} holds, at most {most} at once, {mean:.2f} on average")
    assert all(len(holds) == ACQUIRES for holds in per_process)
    assert most <= LIMIT, f"{most} holders at once with limit={LIMIT}"
    assert most == LIMIT, "the slots are used: some instant sees every one held"
    if cache in REDIS_FAMILY:
        assert mean >= REDIS_MEAN_HOLDERS, f"{mean:.2f} holders on average while any is held"


def test_never_more_holders_than_the_limit(lock_cache, tmp_path):
    check_limit_kept(lock_cache, holders(tmp_path, lock_cache, LIMIT))


def test_never_more_holders_than_the_limit_on_a_cluster(cluster_cache, tmp_path):
    check_limit_kept(cluster_cache, holders(tmp_path, cluster_cache, LIMIT))


@pytest.mark.usefixtures("redis_server")
def test_the_detector_sees_more_holders_than_the_limit(tmp_path):
    """Holders that ask for ``limit=PROCESSES`` are more than ``LIMIT`` at once: the check of
    the tests above fails on them, so it can fail."""
    most, _ = sweep(holders(tmp_path, "default", PROCESSES, acquires=10))
    assert most > LIMIT


# -- one holder process at a time ----------------------------------------------------------------


def start_holder(cache: str, name: str, limit: int, timeout: float, old_tree: Path | None = None):
    """A ``tests.limit_holders hold`` process (running the tasklock of ``old_tree`` if given)
    and its first answer."""
    env, cwd = os.environ.copy(), ROOT
    if old_tree is not None:  # the old tasklock first; the repo's tests (settings) after it
        env["PYTHONPATH"] = os.pathsep.join([str(old_tree), str(ROOT)])
        cwd = old_tree  # `python -m` puts the cwd first on sys.path
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.limit_holders", "hold", cache, name, str(limit), str(timeout)],
        cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    return process, answer(process)


def answer(process: subprocess.Popen, seconds: float = 120) -> dict:
    """The holder process's next answer (a JSON line), waiting for it at most ``seconds``."""
    ready, _, _ = select.select([process.stdout], [], [], seconds)
    line = process.stdout.readline() if ready else ""
    if not line:
        process.kill()
        raise AssertionError(f"no answer from the holder process (exit status {process.wait(10)})")
    return json.loads(line)


def finish(process: subprocess.Popen) -> bool:
    """Let the holder process release; whether its release succeeded."""
    process.stdin.write("\n")
    process.stdin.flush()
    released = answer(process)["released"]
    assert process.wait(30) == 0
    return released


def tried(cache: str, name: str, limit: int = 1, old_tree: Path | None = None) -> dict:
    """One non-blocking try by another process (released at once if it got the lock)."""
    process, first = start_holder(cache, name, limit, 30, old_tree)
    finish(process)
    return first


#: the dead holder's slot lives this long (not renewed)
DEAD_TTL = 2.0
#: how late a waiter may get the dead holder's slot, past its TTL (a polling waiter's pause,
#: a loaded machine)
LATE = 1.0


def test_a_killed_holder_frees_only_its_slot(lock_cache):
    name = _name("killed")
    process, first = start_holder(lock_cache, name, 2, DEAD_TTL)
    try:
        assert first["held"], first
        mine = Lock(name, 30, lock_cache, limit=2)
        assert mine.acquire()
        process.kill()
        assert process.wait(10) < 0
        refused_at = time.monotonic()
        assert not Lock(name, 30, lock_cache, limit=2).acquire(), "the dead holder's slot still counts"
        assert refused_at < first["at"] + DEAD_TTL, "too slow to check the slot before its TTL"
        assert mine.owned()
        newcomer = Lock(name, 30, lock_cache, limit=2)
        assert newcomer.acquire(blocking=True, wait=DEAD_TTL + 30)
        took = time.monotonic() - first["at"]
        print(f"{lock_cache}: the dead holder's slot taken {took:.3f} s after its acquire (TTL {DEAD_TTL} s)")
        assert took <= DEAD_TTL + LATE, "the dead holder's slot is free within its TTL"
        assert mine.owned() and newcomer.owned(), "the dead holder freed only its own slot"
        assert not Lock(name, 30, lock_cache, limit=2).acquire()
        assert mine.release() and newcomer.release()
    finally:
        process.kill()
        process.wait(10)


# -- a rolling upgrade: limit=1 beside the tasklock of before limit= ----------------------------


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory) -> Path:
    """The ``tasklock`` package of commit ``BEFORE_LIMIT``, extracted from this repository."""
    git = shutil.which("git")
    if (
        git is None
        or subprocess.run([git, "-C", str(ROOT), "cat-file", "-e", f"{BEFORE_LIMIT}^{{commit}}"]).returncode
    ):
        pytest.skip(f"commit {BEFORE_LIMIT} (main before limit=) is not in this clone")
    tree = tmp_path_factory.mktemp("tasklock-before-limit")
    archive = subprocess.run(
        [git, "-C", str(ROOT), "archive", BEFORE_LIMIT, "tasklock"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


@pytest.fixture(params=["default", "redis", "memcached", "database"])
def upgrade_cache(request):
    return serving(request, request.param)


def test_limit_one_interoperates_with_the_code_before_limit(upgrade_cache, old_tree):
    cache, name = upgrade_cache, _name("upgrade")
    # the old process runs the old tree: its tasklock knows no limit= at all
    old_limited = tried(cache, name, limit=2, old_tree=old_tree)
    assert old_limited["module"].startswith(str(old_tree)), old_limited
    assert old_limited["error"] and old_limited["error"].startswith("TypeError"), old_limited

    # the old process holds: a new limit=1 is refused, a new limit=2 names both limits
    process, first = start_holder(cache, name, 1, 30, old_tree)
    try:
        assert first["held"] and first["error"] is None, first
        assert not Lock(name, 30, cache).acquire()
        with pytest.raises(LockError, match=r"limit=1.*limit=2"):
            Lock(name, 30, cache, limit=2).acquire()
        assert finish(process), "the old holder's release"
    finally:
        process.kill()

    # a new limit=1 holds: the old process is refused, and takes it once it is free
    new = Lock(name, 30, cache)
    assert new.acquire()
    refused = tried(cache, name, old_tree=old_tree)
    assert not refused["held"] and refused["error"] is None, refused
    assert new.release()
    assert tried(cache, name, old_tree=old_tree)["held"]

    # a new limit=2 holds one slot of two: the old limit=1 add fails on the record
    limited = Lock(name, 30, cache, limit=2)
    assert limited.acquire()
    refused = tried(cache, name, old_tree=old_tree)
    assert not refused["held"] and refused["error"] is None, refused
    assert limited.owned() and limited.release()
    assert tried(cache, name, old_tree=old_tree)["held"]
