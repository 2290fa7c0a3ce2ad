"""The test app for a worker that traces (issue 22): each pool child configures an
OpenTelemetry SDK as it starts (``worker_process_init``, after Django and tasklock are set up)
and instruments Celery, so a task's run is a span; every finished span is written, one JSON
object a line, to the file named by ``TASKLOCK_TEST_SPANS``."""

from __future__ import annotations

import os
from typing import Any

from celery.signals import worker_process_init

from tasklock import task_lock
from tests.celery_app import app

__all__ = ["app", "wait_for_lock"]


@worker_process_init.connect
def trace_this_child(**kwargs: Any) -> None:
    from opentelemetry import trace
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    out = open(os.environ["TASKLOCK_TEST_SPANS"], "a")  # noqa: SIM115 - written while the child lives
    provider = TracerProvider()
    exporter = ConsoleSpanExporter(out=out, formatter=lambda span: span.to_json(indent=None) + "\n")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    CeleryInstrumentor().instrument()


@app.task(bind=True)
@task_lock(key="traced:{item}", timeout=30, on_locked="wait", wait=60)
def wait_for_lock(self, item: str) -> str:
    return "ran"
