"""Drivers: run a plan (``values.calls``) against a backend adapter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..backends.base import LockBackend
from ..exceptions import LockError
from ..values.calls import Plan

T = TypeVar("T")

#: makes a ``LockError`` of a client's exception during a call: (adapter, operation, exception)
Failure = Callable[[LockBackend, str, BaseException], LockError]


def drive(plan: Plan[T], backend: LockBackend, failed: Failure) -> T:
    """Run ``plan`` to its end, making each call on ``backend`` in this thread. A client error
    reaches the plan as the ``LockError`` that ``failed`` makes of it; any other exception (a
    signal's, an interrupt) as itself, so the plan can clean up before it goes on."""
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
            reply = getattr(backend, operation)(*args)
        except backend.errors as exc:
            error = failed(backend, operation, exc)
            error.__cause__ = exc
        except BaseException as exc:
            error = exc
