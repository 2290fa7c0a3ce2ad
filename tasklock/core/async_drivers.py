"""The async driver: run a plan (``values.calls``) against an async adapter, awaiting each
call — the same plans the sync face drives with ``drivers.drive``."""

from __future__ import annotations

from typing import Any, TypeVar

from ..backends.asynchronous import AsyncBackend
from ..values.calls import Plan
from .drivers import Failure

T = TypeVar("T")


async def adrive(plan: Plan[T], backend: AsyncBackend, failed: Failure) -> T:
    """Run ``plan`` to its end, awaiting each call on ``backend``. A client error reaches the
    plan as the ``LockError`` that ``failed`` makes of it; anything else (a cancellation) as
    itself, so the plan can clean up — awaiting its last calls — before it goes on."""
    send = plan.send
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            operation, args = send(reply) if error is None else plan.throw(error)
        except StopIteration as done:
            return done.value
        error = None
        try:
            reply = await getattr(backend, operation)(*args)
        except backend.errors as exc:
            error = failed(backend.sync, operation, exc)
            error.__cause__ = exc
        except BaseException as exc:
            error = exc
