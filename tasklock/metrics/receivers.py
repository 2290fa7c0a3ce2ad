"""The signal receivers that record tasklock's events into its instruments (``instruments``).

Each metric carries the lock's bounded label (``labels.lock_label``) as ``lock``, and the cache
alias as ``cache`` where the signal tells it. A blocking acquire is also a span,
``tasklock.acquire``, made when it ends with the time it began: a child of the span current
in the acquiring thread (a Celery task's, when Celery is instrumented).
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry.trace import Status, StatusCode

from ..core import running
from ..signals import lock_attempted, lock_cleared, lock_duplicate, lock_lost, lock_reaped, lock_released
from ..values.holder import Holder
from . import instruments
from .labels import lock_label

#: the ``outcome`` of an acquire that raised
ERROR = "error"


def _of(lock: Any) -> dict[str, str]:
    """The attributes of a Lock taken in this context."""
    return {"lock": lock_label(lock.name, running.current().name), "cache": lock.cache_alias}


def attempted(*, lock: Any, outcome: str, waited: float, blocking: bool, **kwargs: Any) -> None:
    recorded = instruments.current
    attributes = _of(lock)
    attributes["outcome"] = outcome
    recorded.acquisitions.add(1, attributes)
    recorded.wait.record(waited, attributes)
    if blocking:
        ended = time.time_ns()
        span = recorded.tracer.start_span(
            "tasklock.acquire", attributes=attributes, start_time=ended - int(waited * 1e9)
        )
        if outcome == ERROR:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=ended)


def released(*, lock: Any, held_for: float, **kwargs: Any) -> None:
    instruments.current.hold.record(held_for, _of(lock))


def lost(*, lock: Any, **kwargs: Any) -> None:
    """A renewer thread's report: no task runs in its context."""
    instruments.current.lost.add(1, {"lock": lock_label(lock.name, None), "cache": lock.cache_alias})


def reaped(*, name: str, holder: Holder, reason: str, **kwargs: Any) -> None:
    instruments.current.reaped.add(1, {"lock": lock_label(name, holder.task_name), "reason": reason})


def cleared(*, name: str, via: str, **kwargs: Any) -> None:
    instruments.current.cleared.add(1, {"lock": lock_label(name, None), "via": via})


def duplicate(*, name: str, task_name: str, cache: str, **kwargs: Any) -> None:
    instruments.current.duplicates.add(1, {"lock": lock_label(name, task_name), "cache": cache})


RECEIVERS = (
    (lock_attempted, attempted),
    (lock_released, released),
    (lock_lost, lost),
    (lock_reaped, reaped),
    (lock_cleared, cleared),
    (lock_duplicate, duplicate),
)


def connect() -> None:
    """Connect every receiver (once: again is a no-op)."""
    for signal, receiver in RECEIVERS:
        signal.connect(receiver, weak=False, dispatch_uid=f"tasklock.metrics.{receiver.__name__}")
