"""``UniqueTask``: the Celery base class whose ``apply_async`` refuses duplicates of a task
whose ``task_lock`` has ``unique=`` other than ``while_executing``.

``before_task_publish`` cannot veto a publish, so the veto lives here, as in celery-once's and
celery-singleton's base classes. ``app.send_task("name")`` and signatures sent by name never
call it: they publish without a queue lock (the run lock still keeps copies apart).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from celery import Task, shared_task
from celery.backends.base import DisabledBackend
from celery.exceptions import Ignore
from celery.result import AsyncResult
from celery.utils import uuid
from celery.utils.time import maybe_make_aware

from ..backends import get_backend
from ..conf import conf
from ..core.lock import Lock
from ..exceptions import DuplicateTask, LockError, shown
from ..signals import lock_duplicate
from ..values.holder import Holder
from .decorator import lock_name_of_call, spec_of
from .holding import held_lock
from .uniqueness import (
    QUEUE_SUFFIX,
    UNTIL_EXECUTED,
    UNTIL_EXECUTING,
    WHILE_EXECUTING,
    QueueLock,
    queue_name,
    requeue,
)

logger = logging.getLogger("tasklock")

__all__ = ["UniqueTask"]

#: a follower polls the task it stands in for every FOLLOW_POLL s, growing to FOLLOW_POLL_MAX
FOLLOW_POLL = 0.05
FOLLOW_POLL_MAX = 2.0
#: a followed task that no longer holds a lock naming it has this long (s) to store its result
FOLLOW_GRACE = 10.0
#: the follower task that stands in for a duplicate inside a canvas
FOLLOW_NAME = "tasklock.follow"


def _followed(link: Any, link_error: Any, options: dict[str, Any]) -> bool:
    """Whether something waits for this publish's own task id or goes on after it: a group or
    chord header (``group_id``, ``chord``), a chain (its steps carry ``chain``, the last one an
    empty one), or link callbacks."""
    return bool(link or link_error or "chain" in options or options.get("group_id") or options.get("chord"))


class UniqueTask(Task):
    """Takes the task's queue lock before publishing it; a duplicate publishes nothing."""

    #: what ``task_lock(unique=...)`` looks for: this task's ``apply_async`` takes queue locks
    takes_queue_locks = True

    def _waits(self, countdown: Any, eta: Any) -> float:
        """How long a message published with ``countdown``/``eta`` waits before it may run."""
        if countdown is not None:
            return max(float(countdown), 0.0)
        if eta is None:
            return 0.0
        when = datetime.fromisoformat(eta) if isinstance(eta, str) else eta
        return max((maybe_make_aware(when) - self.app.now()).total_seconds(), 0.0)

    def apply_async(  # type: ignore[override]
        self,
        args: Any = None,
        kwargs: Any = None,
        task_id: str | None = None,
        producer: Any = None,
        link: Any = None,
        link_error: Any = None,
        shadow: str | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Publish unless a copy with the same lock name is queued or running: then return its
        ``AsyncResult`` (``on_duplicate="existing"``) or raise ``DuplicateTask``.

        A retry (the running task republishing its own id) takes no queue lock: the running
        attempt's ``retry`` has turned its lock into the retry's queue lock already."""
        spec = spec_of(self)
        own_retry = task_id is not None and task_id == self.request.id
        if spec is None or spec.unique == WHILE_EXECUTING or own_retry:
            return super().apply_async(args, kwargs, task_id, producer, link, link_error, shadow, **options)
        found = lock_name_of_call(self, tuple(args or ()), dict(kwargs or {}))
        assert found is not None  # spec_of found the task_lock body
        name, alias = found
        named = task_id is not None  # by a canvas (a frozen id) or the caller: it will be asked for
        task_id = task_id or uuid()
        waits = self._waits(options.get("countdown"), options.get("eta"))
        timeout = (spec.timeout or conf.TIMEOUT) + waits
        queued = QueueLock(queue_name(name, spec.unique), alias, timeout, self.name, task_id)
        taken, holder = queued.take()
        if not taken:
            existing = holder.task_id if holder is not None else None
            if lock_duplicate.receivers:
                what = {"name": queued.name, "task_name": self.name, "task_id": existing}
                lock_duplicate.send_robust(sender=Lock, **what, cache=alias or conf.CACHE)
            if spec.on_duplicate == "existing" and existing is not None:
                if not _followed(link, link_error, options):
                    return self.AsyncResult(existing)
                # a canvas waits for the id it froze, or goes on after it: a follower under that
                # id reports the existing task's result (or error), so groups and chords complete,
                # a chain's next step gets it and the link callbacks run
                follower = self.app.tasks[FOLLOW_NAME].apply_async(
                    (existing,),
                    {"task_name": holder.task_name, "name": holder.name, "cache": alias},  # type: ignore[union-attr]
                    task_id=task_id,
                    producer=producer,
                    link=link,
                    link_error=link_error,
                    **options,
                )
                return follower if named else self.AsyncResult(existing)
            raise DuplicateTask(
                f"{self.name} is already queued or running under lock {shown(queued.name)}"
                + (f" (task {existing})" if existing else " (held by no task)"),
                existing,
            )
        try:
            return super().apply_async(args, kwargs, task_id, producer, link, link_error, shadow, **options)
        except BaseException:
            try:
                queued.free()
            except LockError:
                logger.warning("publish of %s failed; queue lock left to its TTL", task_id, exc_info=True)
            raise

    def retry(  # type: ignore[override]
        self,
        args: Any = None,
        kwargs: Any = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: Any = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Any:
        """For ``until_executed``: before the retry is published, this attempt's run lock
        becomes the retry's queue lock (same task id), living until the retry may start plus
        the lock's timeout, so no duplicate is queued across the retry."""
        self._requeue_for_retry(eta, countdown, max_retries)
        return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)

    def _requeue_for_autoretry(self, held: Lock, exc: BaseException) -> bool:
        """For ``until_executed`` with ``autoretry_for``: Celery retries after the body has
        ended, so the body's end turns its lock into the retry's queue lock when ``exc`` will
        be retried (living the longest countdown the retry can get, plus the lock's timeout)."""
        retried_for = tuple(getattr(self, "autoretry_for", ()) or ())
        not_for = (Ignore, *tuple(getattr(self, "dont_autoretry_for", ()) or ()))
        if not retried_for or not isinstance(exc, retried_for) or isinstance(exc, not_for):
            return False
        retry_kwargs = dict(getattr(self, "retry_kwargs", None) or {})
        limit = retry_kwargs.get("max_retries", self.max_retries)
        if limit is not None and self.request.retries + 1 > limit:
            return False
        if getattr(self, "retry_backoff", False):
            waits = float(getattr(self, "retry_backoff_max", 600))
        else:
            countdown = retry_kwargs.get("countdown")
            eta = retry_kwargs.get("eta")
            waits = self._waits(self.default_retry_delay if countdown is None and not eta else countdown, eta)
        return requeue(held, held.timeout + waits)

    def _requeue_for_retry(self, eta: Any, countdown: float | None, max_retries: int | None) -> None:
        request = self.request
        spec = spec_of(self)
        held = held_lock()
        if spec is None or spec.unique != UNTIL_EXECUTED or held is None or request.called_directly:
            return
        holder = held.holder
        if holder is None or holder.task_id != request.id:
            return  # not this attempt's own lock
        limit = self.max_retries if max_retries is None else max_retries
        if limit is not None and request.retries + 1 > limit:
            return  # Celery raises instead of retrying: the body's end frees the lock
        if countdown is None and not eta:
            countdown = self.default_retry_delay
        requeue(held, held.timeout + self._waits(countdown, eta))


def _stores_result(app: Any, task_name: str | None) -> bool:
    """Whether task ``task_name`` stores its result (as far as this app can tell: a task it
    does not know is assumed to)."""
    task = app.tasks.get(task_name) if task_name else None
    return task is None or not (task.ignore_result or isinstance(task.backend, DisabledBackend))


def _locked_until_it_ends(app: Any, task_name: str | None) -> bool:
    """Whether task ``task_name`` holds a lock naming its id until its body ends (every unique
    mode but ``until_executing``, whose body runs unlocked)."""
    task = app.tasks.get(task_name) if task_name else None
    spec = spec_of(task) if task is not None else None
    return spec is not None and spec.unique not in (WHILE_EXECUTING, UNTIL_EXECUTING)


def _holds(task_id: str, name: str, cache: str | None) -> bool:
    """Whether lock ``name`` (the queue lock a duplicate found) or the run lock it is handed
    over to still names task ``task_id``; True when the cache cannot tell."""
    backend = get_backend(cache)
    names = {name, name.removesuffix(QUEUE_SUFFIX)}
    try:
        holders = [Holder.decode(backend.get(backend.key(each))) for each in names]
    except backend.errors:
        return True
    return any(holder is not None and holder.task_id == task_id for holder in holders)


@shared_task(bind=True, name=FOLLOW_NAME, max_retries=None, ignore_result=False)
def follow(
    self: Task,
    task_id: str,
    task_name: str | None = None,
    name: str | None = None,
    cache: str | None = None,
    unlocked_since: float | None = None,
) -> Any:
    """Stand in for task ``task_id`` (of task ``task_name``, found holding lock ``name`` in cache
    ``cache``) inside a canvas: its result once it is ready, polled by retries with a growing
    countdown, so no worker process blocks on it. Never for ever: a task that never stores its
    result (``ignore_result``) fails the stand-in at once, and one that no longer holds a lock
    naming it and stored no result within ``FOLLOW_GRACE`` s ended without one (a per-call
    ``ignore_result``): ``DuplicateTask`` either way."""
    if not _stores_result(self.app, task_name):
        raise DuplicateTask(
            f"task {task_id} ({task_name}) already holds this lock, and its duplicate in a group, chord, "
            "chain or with link= cannot report its result: the task never stores one (ignore_result=True "
            "or no result backend)",
            task_id,
        )
    existing = self.app.AsyncResult(task_id)
    if existing.ready():
        return existing.get(disable_sync_subtasks=False)
    now = time.time()
    if name is None or not _locked_until_it_ends(self.app, task_name) or _holds(task_id, name, cache):
        unlocked_since = None
    elif unlocked_since is None:
        unlocked_since = now
    elif now - unlocked_since > FOLLOW_GRACE:
        raise DuplicateTask(
            f"task {task_id} ({task_name}) no longer holds lock {shown(name)} and stored no result within "
            f"{FOLLOW_GRACE:g} s: it ended without storing one (ignore_result=True on its call?), so its "
            "duplicate in a group, chord, chain or with link= has no result to report",
            task_id,
        )
    kwargs = {"task_name": task_name, "name": name, "cache": cache, "unlocked_since": unlocked_since}
    raise self.retry(kwargs=kwargs, countdown=min(FOLLOW_POLL * 1.5**self.request.retries, FOLLOW_POLL_MAX))
