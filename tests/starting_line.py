"""A common start for racing subprocesses: the moment is named once every one is ready.

A fixed start time ("now + 2.5 s") hopes that every process has imported Django by then;
on a loaded machine some have not, and they start late or alone. Here each process marks
itself ready in a shared directory and waits; the parent waits for every mark, then writes
the start time, a moment just ahead so that all of them see it in time.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

#: between the parent naming the start and the start: every waiting process polls each ms
LEAD_SECONDS = 0.2
#: how long processes may take to get ready (importing Django on a loaded 2-core machine)
READY_SECONDS = 120
GO = "go"


def start_together(directory: Path, processes: list[subprocess.Popen]) -> float:
    """In the parent: wait until every process is ready, then name the start time."""
    deadline = time.monotonic() + READY_SECONDS
    while len(list(directory.glob("ready-*"))) < len(processes):
        exited = [process.returncode for process in processes if process.poll() is not None]
        if exited or time.monotonic() > deadline:
            for process in processes:
                process.kill()
            raise AssertionError(f"not every process got ready within {READY_SECONDS} s (exited: {exited})")
        time.sleep(0.01)
    start_at = time.time() + LEAD_SECONDS
    written = directory / f"{GO}.tmp"
    written.write_text(repr(start_at))
    os.replace(written, directory / GO)  # atomic: nobody reads half a number
    return start_at


def wait_for_start(directory: Path) -> float:
    """In a racing process: say it is ready, wait for the start time and return it."""
    (directory / f"ready-{os.getpid()}").touch()
    go, deadline = directory / GO, time.monotonic() + 2 * READY_SECONDS
    while not go.exists():
        if time.monotonic() > deadline:
            raise SystemExit("the parent never named the start")
        time.sleep(0.001)
    start_at = float(go.read_text())
    while time.time() < start_at:
        time.sleep(0.0005)
    return start_at
