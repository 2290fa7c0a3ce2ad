"""``python -m bench`` (``make bench``): every comparison, then docs/benchmarks.md and .png.

``--quick`` runs fewer repeats and writes nothing; ``--profile LABEL`` profiles one lock
approach of bench/locks.py with pyinstrument; ``--only limits`` runs bench/limits.py alone
and prints its section of docs/benchmarks.md (writing nothing).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from . import async_locks, contention, handoff, limits, locks, metrics_cost, report, task_overhead
from .environment import machine, servers

LISTING = os.path.join(os.path.dirname(os.path.abspath(__file__)), "listing.py")


def _print_section(title: str, table: str) -> None:
    print(f"\n== {title}\n{table}", flush=True)


def _listing() -> tuple[str | None, int]:
    """The output and exit status of bench/listing.py, run last in its own process, if it exists."""
    if not os.path.exists(LISTING):
        return None, 0
    print("\n== listing (bench/listing.py)", flush=True)
    done = subprocess.run([sys.executable, "-m", "bench.listing"], capture_output=True, text=True)
    print(done.stdout, done.stderr, sep="\n", flush=True)
    if done.returncode:
        print(f"bench/listing.py exited with status {done.returncode}", flush=True)
    return done.stdout, done.returncode


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats; print, write nothing")
    parser.add_argument("--profile", metavar="LABEL", help="profile one approach of bench/locks.py")
    parser.add_argument("--only", choices=["limits"], help="run one comparison alone; print, write nothing")
    options = parser.parse_args(argv)
    started = time.monotonic()
    with servers():
        if options.profile:
            locks.profile(options.profile)
            return
        if options.only == "limits":
            _print_section("machine", "\n".join(f"{k}: {v}" for k, v in machine().items()))
            cycle_rows = limits.cycles(repeats=4) if options.quick else limits.cycles()
            limit_contention = limits.contention(repeats=1) if options.quick else limits.contention()
            print("\n\n".join(["", *report.limit_section(cycle_rows, limit_contention)]), flush=True)
            return
        facts = machine()
        _print_section("machine", "\n".join(f"{k}: {v}" for k, v in facts.items()))
        lock_rows = locks.run(repeats=4) if options.quick else locks.run()
        _print_section("uncontended lock cycles", report.lock_table(lock_rows))
        metrics_rows = metrics_cost.run(repeats=4) if options.quick else metrics_cost.run()
        _print_section("what metrics cost the cycle", report.metrics_table(metrics_rows))
        handoff_rows = handoff.run(rounds=5) if options.quick else handoff.run()
        _print_section("handoff under contention", report.handoff_table(handoff_rows))
        contention_rows = contention.run(counts=(4, 8), repeats=1) if options.quick else contention.run()
        _print_section("contention", report.contention_table(contention_rows))
        limit_cycle_rows = limits.cycles(repeats=4) if options.quick else limits.cycles()
        _print_section("limit=N: uncontended cycles", report.limit_cycle_table(limit_cycle_rows))
        limit_contention = limits.contention(repeats=1) if options.quick else limits.contention()
        _print_section("limit=N: contention", report.limit_contention_table(limit_contention))
        quick_tasks = ((0.0, 100, 2), (0.010, 40, 1))
        workloads = task_overhead.run(quick_tasks) if options.quick else task_overhead.run()
        _print_section("Celery task overhead", report.task_table(workloads))
        async_rows = async_locks.run(repeats=4) if options.quick else async_locks.run()
        _print_section("async uncontended lock cycles", report.lock_table(async_rows))
        scale = async_locks.scale()
        _print_section("1,000 async waiters on 10 names", report.scale_table(scale))
    listing, status = _listing()
    minutes = (time.monotonic() - started) / 60
    print(f"\n{minutes:.1f} min", flush=True)
    if not options.quick:
        report.plot(lock_rows)
        rows = (lock_rows, metrics_rows, workloads, handoff_rows, contention_rows)
        limit_rows = (limit_cycle_rows, limit_contention)
        report.write(report.markdown(facts, *rows, minutes, listing, async_rows, scale, *limit_rows))
        print(f"wrote {report.MARKDOWN} and {report.PLOT}")
    if status:
        raise SystemExit(status)


if __name__ == "__main__":
    main()
