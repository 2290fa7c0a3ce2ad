"""OpenTelemetry metrics and spans (issue 22): the figures of a scenario on a real Redis, read
through an SDK ``MeterProvider`` with an in-memory reader; the spans of blocking acquires; a
Prometheus scrape; the labels, which never carry a lock name's arguments; and tasklock
without ``opentelemetry`` installed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import urllib.request
import uuid
from collections import Counter

import pytest
import redis
from django.conf import settings
from django.core.checks import run_checks
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, start_http_server

import tasklock
from tasklock import Lock, task_lock
from tasklock.backends import get_backend
from tasklock.dead_holders.reaper import reap_dead_processes
from tasklock.metrics import instruments
from tasklock.metrics.labels import lock_label
from tests import unique_tasks
from tests.test_reaper import held_by_a_dead_process
from tests.waiting import wait_until

#: the argument part of every lock name below: no metric attribute may carry it
ARGUMENT = "arg-7f3c"

Points = dict[tuple[str, frozenset], float]


@pytest.fixture
def both():
    """An SDK MeterProvider with an in-memory reader and a TracerProvider whose spans end in
    memory, recorded into for the test: (reader, tracer provider, span exporter)."""
    memory, exporter = InMemoryMetricReader(), InMemorySpanExporter()
    meters, tracers = MeterProvider(metric_readers=[memory]), TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(exporter))
    instruments.instrument(meters, tracers)
    yield memory, tracers, exporter
    instruments.instrument()
    meters.shutdown()
    tracers.shutdown()


@pytest.fixture
def reader(both):
    return both[0]


@pytest.fixture
def spans(both):
    return both[1:]


def points(reader: InMemoryMetricReader) -> Points:
    """(metric name, attributes) -> a counter's value or a histogram's count."""
    found: Points = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = point.count if isinstance(point, HistogramDataPoint) else point.value
                    found[metric.name, frozenset(point.attributes.items())] = value
    return found


def totals(found: Points, label: str) -> Counter:
    """Per metric name (and outcome), the figures of lock label ``label``."""
    summed: Counter = Counter()
    for (metric, attributes), value in found.items():
        attributes = dict(attributes)
        if attributes.get("lock") == label:
            summed[metric if "outcome" not in attributes else f"{metric}:{attributes['outcome']}"] += value
    return summed


def test_the_figures_of_a_scenario(redis_server, reader):
    """5 uncontended cycles, 1 contended try, 1 force-clear, 1 lost renewal, 1 reaped dead
    holder, 1 refused duplicate: the counters and the histograms' counts match."""
    label = f"metrics-{uuid.uuid4().hex}"
    name = f"{label}:{ARGUMENT}"
    for _ in range(5):
        held = Lock(name, timeout=30)
        assert held.acquire() and held.release()
    blocker = Lock(name, timeout=30)
    assert blocker.acquire()  # the 6th acquisition
    assert not Lock(name, timeout=30).acquire()  # contended
    assert tasklock.clear(name) is not None  # force-cleared, via python
    assert blocker.release() is False  # still a hold: the 6th
    renewing = Lock(f"{label}:renewed-{ARGUMENT}", timeout=0.6, renew=True)
    assert renewing.acquire()  # the 7th acquisition
    get_backend().clear(renewing._key)  # behind its back: the next renewal finds it gone
    wait_until(lambda: renewing.lost, "the renewal finds the lock gone")
    assert renewing.release() is False  # lost: nothing to release, no hold recorded
    held_by_a_dead_process(f"{label}:dead-{ARGUMENT}", "default")
    assert reap_dead_processes("default") >= 1
    item = f"{ARGUMENT}-{uuid.uuid4().hex}"
    queued = unique_tasks.idle_rebuild.delay(item)
    try:
        assert unique_tasks.idle_rebuild.delay(item).id == queued.id  # refused
    finally:
        get_backend().clear(get_backend().key(f"{unique_tasks.idle_rebuild.name}:{item}"))
        redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(unique_tasks.IDLE_QUEUE)

    found = points(reader)
    assert totals(found, label) == Counter(
        {
            "tasklock.acquisitions:acquired": 7,
            "tasklock.acquisitions:contended": 1,
            "tasklock.wait.duration:acquired": 7,
            "tasklock.wait.duration:contended": 1,
            "tasklock.hold.duration": 6,
            "tasklock.cleared": 1,
            "tasklock.lost": 1,
            "tasklock.reaped": 1,
        }
    )
    duplicates = totals(found, unique_tasks.idle_rebuild.name)
    assert duplicates == Counter({"tasklock.duplicates": 1})
    attributes = [dict(each) for _, each in found]
    assert {"lock": label, "cache": "default", "outcome": "contended"} in attributes
    assert {"lock": label, "reason": "dead-process"} in attributes
    assert {"lock": label, "via": "python"} in attributes
    carried = [value for each in attributes for value in each.values() if ARGUMENT in str(value)]
    assert not carried, f"metric attributes carry a lock name's argument: {carried}"


def test_a_blocking_acquire_is_a_span_inside_the_current_one(redis_server, spans):
    provider, exporter = spans
    name = f"metrics-span:{uuid.uuid4().hex}"
    holder = Lock(name, timeout=30)
    assert holder.acquire()
    assert not Lock(name, timeout=30).acquire()  # one try: no span
    waiter = Lock(name, timeout=30)
    outcome: list[bool] = []

    def wait_in_a_task() -> None:
        with provider.get_tracer("tests").start_as_current_span("task"):
            outcome.append(waiter.acquire(blocking=True, wait=30))

    thread = threading.Thread(target=wait_in_a_task)
    thread.start()
    backend = get_backend()
    wait_until(lambda: backend.client.llen(backend.companions(holder._key)[1]) == 1, "the waiter is in line")
    assert holder.release()
    thread.join(30)
    assert outcome == [True]
    waiter.release()
    finished = {span.name: span for span in exporter.get_finished_spans()}
    assert set(finished) == {"task", "tasklock.acquire"}
    acquire, task = finished["tasklock.acquire"], finished["task"]
    assert acquire.parent is not None and acquire.parent.span_id == task.context.span_id
    assert task.start_time <= acquire.start_time < acquire.end_time <= task.end_time
    assert dict(acquire.attributes) == {"lock": "metrics-span", "cache": "default", "outcome": "acquired"}


def test_a_prometheus_scrape_shows_the_figures(redis_server):
    registry = CollectorRegistry()
    provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry)])
    instruments.instrument(meter_provider=provider)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        label = f"scraped{uuid.uuid4().hex}"
        for _ in range(3):
            held = Lock(f"{label}:{ARGUMENT}", timeout=30)
            assert held.acquire() and held.release()
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=10) as page:
            scraped = page.read().decode()
    finally:
        server.shutdown()
        thread.join(10)
        instruments.instrument()
        provider.shutdown()
    counted = [line for line in scraped.splitlines() if line.startswith("tasklock_acquisitions_total{")]
    ours = [line for line in counted if f'lock="{label}"' in line]
    assert len(ours) == 1 and 'outcome="acquired"' in ours[0] and ours[0].endswith(" 3.0"), scraped
    assert f'tasklock_hold_duration_seconds_count{{cache="default",lock="{label}"' in scraped, scraped
    assert ARGUMENT not in scraped


@task_lock(key="item")
def locked_plain(item: str) -> str:
    return "ran"


@pytest.mark.parametrize(
    ("name", "task_name", "label"),
    [
        ("app.tasks.rebuild:42", "app.tasks.rebuild", "app.tasks.rebuild"),
        ("app.tasks.rebuild", "app.tasks.rebuild", "app.tasks.rebuild"),
        ('ns:task:{"a":1}', "ns:task", "ns:task"),  # a task name with a colon
        ("game:42", "app.tasks.play", "game"),  # a key template's head
        ("report:42", None, "report"),
        ("tenant-42", "app.tasks.export", "app.tasks.export"),  # no colon: the task taking it
        ("nightly-backup", None, "nightly-backup"),  # no colon, no task: a literal
    ],
)
def test_labels(name, task_name, label):
    assert lock_label(name, task_name) == label


def label_by_kind(name: str, task_name: str | None) -> str:
    return name.split("-")[0]


def test_metric_name_setting_as_callable_or_dotted_path(settings):
    settings.TASKLOCK = {"METRIC_NAME": label_by_kind}
    assert lock_label("tenant-42", "x") == "tenant"
    settings.TASKLOCK = {"METRIC_NAME": f"{__name__}.label_by_kind"}
    assert lock_label("export-7", None) == "export"
    settings.TASKLOCK = {"METRIC_NAME": lambda name, task: 42}
    with pytest.raises(TypeError, match="must return a str, got int"):
        lock_label("export-7", None)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (42, "must be None, a callable"),
        ("tests.test_metrics.nowhere_at_all", "names nothing importable"),
        ("tests.test_metrics.ARGUMENT", "not a callable"),
    ],
)
def test_a_bad_metric_name_setting_is_e003(settings, value, problem):
    settings.TASKLOCK = {"METRIC_NAME": value}
    errors = [m for m in run_checks() if m.id == "tasklock.E003" and "METRIC_NAME" in m.msg]
    assert len(errors) == 1 and problem in errors[0].msg


def test_a_task_lock_function_called_directly_is_labelled_by_its_name(redis_server, reader):
    assert locked_plain(f"{ARGUMENT}-{uuid.uuid4().hex}") == "ran"
    label = f"{__name__}.locked_plain"
    once = ("tasklock.acquisitions:acquired", "tasklock.wait.duration:acquired", "tasklock.hold.duration")
    assert totals(points(reader), label) == Counter(dict.fromkeys(once, 1))


def test_a_cache_error_is_an_error_outcome_and_span(both, settings):
    """A cache that refuses connections: the acquire raises ``LockError``, counted as ``error``;
    a blocking one is a span with status ERROR. ``METRIC_NAME`` names the lock."""
    settings.TASKLOCK = {"METRIC_NAME": f"{__name__}.label_by_kind"}
    for blocking in (False, True):
        with pytest.raises(tasklock.LockError):
            Lock(f"down-{ARGUMENT}", 30, "redis_down").acquire(blocking, 5 if blocking else None)
    reader, _, exporter = both
    assert totals(points(reader), "down") == Counter(
        {"tasklock.acquisitions:error": 2, "tasklock.wait.duration:error": 2}
    )
    [span] = exporter.get_finished_spans()
    assert span.name == "tasklock.acquire" and span.status.status_code.name == "ERROR"
    assert dict(span.attributes) == {"lock": "down", "cache": "redis_down", "outcome": "error"}


WITHOUT_OPENTELEMETRY = """
import sys
sys.modules["opentelemetry"] = None  # as if not installed: every import of it fails
import django
django.setup()
from tasklock import Lock
from tasklock.signals import lock_attempted, lock_released
held = Lock("no-otel:1", timeout=30)
assert held.acquire() and held.release()
assert not lock_attempted.receivers and not lock_released.receivers
loaded = [name for name, module in sys.modules.items() if module is not None]
assert not [name for name in loaded if name.startswith(("opentelemetry", "tasklock.metrics."))], loaded
print("ok")
"""


def test_tasklock_works_without_opentelemetry(redis_server):
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(WITHOUT_OPENTELEMETRY)], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
