"""System checks of issue 11: tasklock.E004 (unique= without UniqueTask) and tasklock.W008
(a locked task's countdown or acks_late run outlasting the Redis broker's visibility_timeout)."""

import pytest
from celery import Celery, current_app

from tasklock import task_lock
from tasklock.celery import UniqueTask
from tasklock.checks.tasks import check_unique_tasks, unique_base_errors, visibility_timeout_warnings


def own(found: list, check_id: str) -> dict[str, str]:
    """Messages about the throwaway app's own tasks (it also gets every shared task)."""
    assert {message.id for message in found} <= {check_id}
    return {message.obj: message.msg for message in found if message.obj.startswith("own.")}


def unique_app() -> Celery:
    app = Celery("tasklock_e004", set_as_current=False)

    @app.task(name="own.plain_base", shared=False)
    @task_lock(key=(), unique="until_executed")
    def plain_base() -> None: ...

    @app.task(name="own.unique_base", base=UniqueTask, shared=False)
    @task_lock(key=(), unique="until_and_while_executing")
    def unique_base() -> None: ...

    @app.task(name="own.while_executing", shared=False)
    @task_lock(key=())
    def while_executing() -> None: ...

    return app


def test_e004_unique_on_a_task_whose_base_is_not_unique_task():
    found = own(unique_base_errors(unique_app()), "tasklock.E004")
    assert list(found) == ["own.plain_base"]
    assert "until_executed" in found["own.plain_base"] and "UniqueTask" in found["own.plain_base"]


def test_e004_from_the_registered_check_on_the_current_app():
    previous = current_app._get_current_object()
    app = unique_app()
    app.set_current()
    try:
        assert "own.plain_base" in own(check_unique_tasks(), "tasklock.E004")
    finally:
        previous.set_current()


def visibility_app(broker: str, visibility: float | None = 10) -> Celery:
    app = Celery("tasklock_w008", broker=broker, set_as_current=False)
    if visibility is not None:
        app.conf.broker_transport_options = {"visibility_timeout": visibility}

    @app.task(name="own.long_countdown", shared=False)
    @task_lock(key=(), countdown=20)
    def long_countdown() -> None: ...

    @app.task(name="own.jittered_past", shared=False)
    @task_lock(key=(), countdown=9)  # up to 9 * 1.25 = 11.25 s with the retry jitter
    def jittered_past() -> None: ...

    @app.task(name="own.default_delay", shared=False, default_retry_delay=30)
    @task_lock(key=())
    def default_delay() -> None: ...

    @app.task(name="own.acks_late", shared=False, acks_late=True)
    @task_lock(key=(), countdown=1)
    def acks_late() -> None: ...

    @app.task(name="own.acks_late_limited", shared=False, acks_late=True, time_limit=5)
    @task_lock(key=(), countdown=1)
    def acks_late_limited() -> None: ...

    @app.task(name="own.short", shared=False)
    @task_lock(key=(), countdown=1)
    def short() -> None: ...

    return app


def test_w008_countdowns_and_acks_late_runs_past_the_visibility_timeout():
    found = own(visibility_timeout_warnings(visibility_app("redis://127.0.0.1:1/0")), "tasklock.W008")
    assert sorted(found) == ["own.acks_late", "own.default_delay", "own.jittered_past", "own.long_countdown"]
    assert "visibility_timeout of 10 s" in found["own.long_countdown"]
    assert "no time limit" in found["own.acks_late"]


def test_w008_default_visibility_timeout_is_an_hour():
    found = own(visibility_timeout_warnings(visibility_app("redis://127.0.0.1:1/0", None)), "tasklock.W008")
    assert list(found) == ["own.acks_late"]  # no time limit: it can outlast any timeout


@pytest.mark.parametrize("broker", ["amqp://guest@127.0.0.1//", "memory://"])
def test_w008_only_for_the_redis_broker(broker):
    assert own(visibility_timeout_warnings(visibility_app(broker)), "tasklock.W008") == {}
