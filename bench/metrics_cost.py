"""What metrics cost the uncontended cycle (issue 22): tasklock's ``Lock`` on django-redis with
no metric receivers connected (as without ``opentelemetry-api``), with them but no SDK (the
API's no-op instruments), and with an SDK ``MeterProvider`` reading into memory plus a
``TracerProvider``. The three are interleaved in one process; each cycle first puts the
metrics in its own state (a no-op when they already are), so the rows share every other cost.

``python -m bench.metrics_cost`` prints the table alone.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

from .measure import Cycle, Samples, interleaved

NAME = "bench:metrics"
TIMEOUT = 30
REPEATS = 25
BATCH_SECONDS = 0.08
#: label -> the state its cycles run in
MODES = {
    "Lock · django-redis, no receivers (no opentelemetry)": "off",
    "Lock · django-redis, opentelemetry-api, no SDK": "api",
    "Lock · django-redis, SDK + in-memory reader": "sdk",
}


@dataclass(frozen=True)
class Row:
    label: str
    per_second: float
    p50_us: float
    #: to the no-receivers row, median over repeats
    ratio: float
    #: µs per cycle over the no-receivers row, median over repeats
    added_us: float


def _states() -> Callable[[str], None]:
    """A switch between the three states; each switch is made only when the state changes."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    from tasklock.metrics import instruments, receivers

    meters, tracers = MeterProvider(metric_readers=[InMemoryMetricReader()]), TracerProvider()
    current = [""]

    def switch(mode: str) -> None:
        if current[0] == mode:
            return
        current[0] = mode
        for signal, receiver in receivers.RECEIVERS:
            signal.disconnect(receiver, dispatch_uid=f"tasklock.metrics.{receiver.__name__}")
        if mode != "off":
            receivers.connect()
            instruments.instrument(*((meters, tracers) if mode == "sdk" else ()))

    return switch


def _cycle(mode: str, switch: Callable[[str], None]) -> Cycle:
    from tasklock import Lock

    def cycle() -> None:
        switch(mode)
        held = Lock(NAME, TIMEOUT)
        if not (held.acquire() and held.release()):
            raise RuntimeError("benchmark cycle failed: the lock was not free")

    return cycle


def run(repeats: int = REPEATS, seconds: float = BATCH_SECONDS) -> list[Row]:
    """The three states interleaved; ratios and added µs against the no-receivers row."""
    switch = _states()
    try:
        cycles = {label: _cycle(mode, switch) for label, mode in MODES.items()}
        samples = interleaved(cycles, repeats, seconds)
    finally:
        switch("api")  # as the app starts: receivers connected, the global (no-op) providers
    base = samples[next(iter(MODES))]
    found = samples.items()
    return [Row(label, s.per_second, s.p50_us, s.ratio_to(base), _added(s, base)) for label, s in found]


def _added(samples: Samples, base: Samples) -> float:
    pairs = zip(samples.batch_medians, base.batch_medians, strict=True)
    return statistics.median(a - b for a, b in pairs) / 1000


if __name__ == "__main__":
    from . import report
    from .environment import servers

    with servers():
        print(report.metrics_table(run()))
