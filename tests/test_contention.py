"""Mutual exclusion across processes, checked by an overlap detector that does not trust
the lock: each contender writes down when it held the lock (CLOCK_MONOTONIC is system-wide
on Linux) and no two intervals of different processes may intersect."""

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

CONTENDERS = 6


def contend(
    tmp_path,
    cache: str,
    seconds=2.0,
    hold=0.002,
    allow_locmem=False,
    lease=None,
    name=None,
    once=False,
    fair=False,
):
    """Run the contender processes on one lock; their ``[start, end, token]`` intervals."""
    name = name or f"contention:{uuid.uuid4().hex}"
    start_at = time.time() + 2.5  # every process starts its loop at once, after setup
    outputs = [tmp_path / f"contender-{i}.json" for i in range(CONTENDERS)]
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.contenders",
                cache,
                name,
                str(start_at),
                str(seconds),
                str(hold),
                str(out),
                *(["--allow-locmem"] if allow_locmem else []),
                *([f"--lease={lease}"] if lease else []),
                *(["--once"] if once else []),
                *(["--fair"] if fair else []),
            ],
            env=os.environ.copy(),
        )
        for out in outputs
    ]
    for process in processes:
        assert process.wait(60 + seconds + hold) == 0
    return [json.loads(out.read_text()) for out in outputs]


def overlaps(per_process) -> int:
    spans = sorted((s, e, i) for i, spans in enumerate(per_process) for s, e, _ in spans)
    count, latest_end, latest_owner = 0, -1.0, None
    for start, end, owner in spans:
        if start < latest_end and owner != latest_owner:
            count += 1
        if end > latest_end:
            latest_end, latest_owner = end, owner
    return count


def test_detector_sees_a_broken_lock(tmp_path):
    """LocMemCache gives every process its own lock: the detector must catch it."""
    per_process = contend(tmp_path, "locmem", seconds=1.0, hold=0.01, allow_locmem=True)
    assert overlaps(per_process) > 0


def test_mutual_exclusion(lock_cache, tmp_path):
    per_process = contend(tmp_path, lock_cache)
    acquisitions = sum(map(len, per_process))
    print(f"{lock_cache}: {acquisitions} acquisitions by {CONTENDERS} processes")
    assert acquisitions > 0
    assert sum(1 for spans in per_process if spans) >= 2, "the lock must change hands"
    assert overlaps(per_process) == 0


@pytest.mark.parametrize("cache", ["default", "redis"])
def test_mutual_exclusion_fair(cache, redis_server, tmp_path):
    """Fair waiters, handed the lock by each release: never two holders, every one served."""
    per_process = contend(tmp_path, cache, fair=True)
    assert all(per_process), "in line, every process gets its turns"
    assert overlaps(per_process) == 0
    tokens = [token for _, _, token in sorted(span for spans in per_process for span in spans)]
    assert tokens == sorted(set(tokens)), "fencing tokens grow with every handover"
