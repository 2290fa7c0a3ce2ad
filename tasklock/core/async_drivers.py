"""The async driver: run a plan (``values.calls``) against an async adapter, awaiting each
call — the same plans the sync face drives with ``drivers.drive``."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from ..backends.asynchronous import AsyncBackend
from ..values.calls import Plan
from .drivers import Failure

T = TypeVar("T")


async def adrive(plan: Plan[T], backend: AsyncBackend, failed: Failure) -> T:
    """Run ``plan`` to its end, awaiting each call on ``backend``. A client error reaches the
    plan as the ``LockError`` that ``failed`` makes of it; anything else (a cancellation) as
    itself, so the plan can clean up — awaiting its last calls — before it goes on. A
    cancellation requested during a call that the client lost (Python 3.11's ``asyncio.wait_for``
    returns a finished send's result instead) reaches the plan as if it had cut the call off."""
    send = plan.send
    reply: Any = None
    error: BaseException | None = None
    task = asyncio.current_task()
    cancels = task.cancelling() if task is not None else 0
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
        if task is not None and task.cancelling() != cancels:
            cancels = task.cancelling()
            if error is None:  # requested, but lost by the client (Python 3.11's wait_for)
                error = asyncio.CancelledError()
