"""The demo's per-game figures and the table that shows them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from celery.result import AsyncResult

from tasklock import SKIPPED

from .timeline import Timeline, most_at_once


@dataclass(frozen=True)
class GameReport:
    """What happened to the tasks sent for one lock."""

    lock_name: str
    sent: int
    ran: int
    skipped: int
    retried: int
    at_once: int
    failed: int
    unfinished: int

    @property
    def problems(self) -> list[str]:
        found = []
        if self.at_once > 1:
            found.append(f"{self.at_once} HOLDERS AT ONCE")
        if self.failed:
            found.append(f"{self.failed} failed")
        if self.unfinished:
            found.append(f"{self.unfinished} unfinished")
        if not self.unfinished and self.ran + self.skipped != self.sent:
            found.append("ran + skipped != sent")
        return found

    @property
    def ok(self) -> bool:
        return not self.problems


def build_reports(timeline: Timeline, sent: list[tuple[str, AsyncResult]]) -> list[GameReport]:
    """One report per lock name, from the run's records and the tasks' results."""
    spans = timeline.spans()
    contentions = timeline.contentions()
    by_lock: dict[str, Counter[str]] = {}
    for lock_name, result in sent:
        counts = by_lock.setdefault(lock_name, Counter())
        counts["sent"] += 1
        if not result.ready():
            counts["unfinished"] += 1
        elif result.failed():
            counts["failed"] += 1
        elif result.result == SKIPPED:
            counts["skipped"] += 1
    return [
        GameReport(
            lock_name=lock_name,
            sent=counts["sent"],
            ran=len(spans.get(lock_name, [])),
            skipped=counts["skipped"],
            retried=contentions["retry", lock_name],
            at_once=most_at_once(spans.get(lock_name, [])),
            failed=counts["failed"],
            unfinished=counts["unfinished"],
        )
        for lock_name, counts in by_lock.items()
    ]


COLUMNS = ("lock", "sent", "ran", "skipped", "retried", "most at once", "result")


def table(reports: list[GameReport]) -> list[str]:
    """The summary as aligned text lines: a header, then one row per lock."""
    rows = [COLUMNS] + [
        (r.lock_name, r.sent, r.ran, r.skipped, r.retried, r.at_once, "OK" if r.ok else ", ".join(r.problems))
        for r in reports
    ]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(COLUMNS) - 1)]
    lines = []
    for row in rows:
        cells = [str(row[0]).ljust(widths[0])]
        cells += [str(value).rjust(width) for value, width in zip(row[1:-1], widths[1:], strict=True)]
        lines.append("  ".join([*cells, str(row[-1])]))
    return lines
