"""Metrics and spans: OpenTelemetry instruments fed by tasklock's signals.

Optional (``django-tasklock[otel]``, the ``opentelemetry-api`` package only): without it
nothing here is imported and no receiver is connected. With it, the instruments are the
API's, no-ops until the application configures an SDK (a ``MeterProvider``, a
``TracerProvider``); ``instruments.instrument()`` binds them to other providers.
"""

from __future__ import annotations


def connect() -> bool:
    """Connect the receivers that record tasklock's signals, if ``opentelemetry-api`` is
    installed; whether it is."""
    try:
        import opentelemetry.metrics
        import opentelemetry.trace  # noqa: F401
    except ImportError:
        return False
    from . import receivers

    receivers.connect()
    return True
