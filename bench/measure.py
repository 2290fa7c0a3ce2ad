"""Interleaved timing of several approaches in one process, and the statistics reported.

Every repeat runs each approach once, in a rotated order, so drift on the machine (CPU
frequency, a noisy neighbour) hits all approaches alike; figures are medians over repeats.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

Cycle = Callable[[], object]
#: times ``count`` calls of a cycle: ns each
Timer = Callable[[Cycle, int], list[int]]


def time_cycles(cycle: Cycle, count: int) -> list[int]:
    """The ns each of ``count`` calls of ``cycle`` took."""
    timings = [0] * count
    clock = time.perf_counter_ns
    for i in range(count):
        started = clock()
        cycle()
        timings[i] = clock() - started
    return timings


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0-100) of ``values``."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass
class Samples:
    """The timings of one approach: mean and median ns per cycle of each repeat, every cycle's ns."""

    batch_means: list[float] = field(default_factory=list)
    batch_medians: list[float] = field(default_factory=list)
    cycles: list[int] = field(default_factory=list)

    def run(self, cycle: Cycle, count: int, timer: Timer | None = None) -> None:
        gc.collect()
        timings = (timer or time_cycles)(cycle, count)
        self.batch_means.append(sum(timings) / count)
        self.batch_medians.append(statistics.median(timings))
        self.cycles.extend(timings)

    @property
    def per_second(self) -> float:
        return 1e9 / statistics.median(self.batch_means)

    @property
    def p50_us(self) -> float:
        return percentile(self.cycles, 50) / 1000

    @property
    def p99_us(self) -> float:
        return percentile(self.cycles, 99) / 1000

    def ratio_to(self, floor: Samples) -> float:
        """This approach's median cycle time over the floor's, repeat by repeat; the median of those.

        Medians, not means: a burst from another process on the machine then moves no ratio.
        """
        pairs = zip(self.batch_medians, floor.batch_medians, strict=True)
        return statistics.median(a / b for a, b in pairs)


def batch_size(cycle: Cycle, seconds: float, warmup: int = 30, timer: Timer = time_cycles) -> int:
    """How many cycles take about ``seconds``, after a warm-up (connections, scripts, caches)."""
    each = sum(timer(cycle, warmup)) / warmup / 1e9
    return max(20, int(seconds / each))


def interleaved(
    cycles: dict[str, Cycle], repeats: int, seconds: float, timer: Timer = time_cycles
) -> dict[str, Samples]:
    """Time each cycle for about ``seconds`` per repeat, all approaches in every repeat
    (``timer`` runs the cycles: an async one awaits each on an event loop)."""
    counts = {name: batch_size(cycle, seconds, timer=timer) for name, cycle in cycles.items()}
    samples = {name: Samples() for name in cycles}
    names = list(cycles)
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].run(cycles[name], counts[name], timer)
    return samples
