"""tasklock's OpenTelemetry instruments and tracer, made from the providers given (default:
the global ones, which forward to the SDK once the application sets it)."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry import metrics, trace
from opentelemetry.metrics import Counter, Histogram, MeterProvider
from opentelemetry.trace import Tracer, TracerProvider

SCOPE = "tasklock"
#: seconds: from a handoff in line (~1 ms) to a wait as long as a lock's timeout
WAIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
#: seconds: from a no-op body to an hour-long export
HOLD_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600)


@dataclass(frozen=True)
class Instruments:
    """The instruments tasklock records into, and the tracer of its spans."""

    acquisitions: Counter
    wait: Histogram
    hold: Histogram
    lost: Counter
    reaped: Counter
    duplicates: Counter
    cleared: Counter
    tracer: Tracer


def _made(meter_provider: MeterProvider | None, tracer_provider: TracerProvider | None) -> Instruments:
    meter = (meter_provider or metrics.get_meter_provider()).get_meter(SCOPE)
    return Instruments(
        acquisitions=meter.create_counter(
            "tasklock.acquisitions", "{acquisition}", "Lock acquires ended, by outcome"
        ),
        wait=meter.create_histogram(
            "tasklock.wait.duration",
            "s",
            "How long an acquire took, by outcome",
            explicit_bucket_boundaries_advisory=WAIT_BUCKETS,
        ),
        hold=meter.create_histogram(
            "tasklock.hold.duration",
            "s",
            "How long a lock was held",
            explicit_bucket_boundaries_advisory=HOLD_BUCKETS,
        ),
        lost=meter.create_counter("tasklock.lost", "{lock}", "Locks a renewal found gone or could not renew"),
        reaped=meter.create_counter("tasklock.reaped", "{lock}", "Locks of dead holders freed"),
        duplicates=meter.create_counter("tasklock.duplicates", "{task}", "Duplicate publishes refused"),
        cleared=meter.create_counter("tasklock.cleared", "{lock}", "Locks force-cleared by an operator"),
        tracer=(tracer_provider or trace.get_tracer_provider()).get_tracer(SCOPE),
    )


#: what the receivers record into
current = _made(None, None)


def instrument(
    meter_provider: MeterProvider | None = None, tracer_provider: TracerProvider | None = None
) -> Instruments:
    """Record tasklock's metrics into ``meter_provider`` and its spans into ``tracer_provider``
    from now on (None: the global provider, as at start). The instruments made."""
    global current
    current = _made(meter_provider, tracer_provider)
    return current
