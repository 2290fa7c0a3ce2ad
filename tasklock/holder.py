"""The holder metadata stored as the value of a lock key."""

from __future__ import annotations

import json
import os
import socket
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

HOST = socket.gethostname()


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a lock, since when and until when (epoch seconds)."""

    token: str
    name: str
    host: str
    pid: int
    thread: str
    acquired_at: float
    expires_at: float
    timeout: float
    task_name: str | None = None
    task_id: str | None = None

    @classmethod
    def here(
        cls,
        token: str,
        name: str,
        now: float,
        timeout: float,
        task_name: str | None = None,
        task_id: str | None = None,
    ) -> Holder:
        """Metadata for a holder in this process and thread."""
        return cls(
            token, name, HOST, os.getpid(), threading.current_thread().name,
            now, now + timeout, timeout, task_name, task_id,
        )  # fmt: skip

    def renewed(self, now: float, timeout: float) -> Holder:
        """The same holder with a new expiry."""
        return Holder(
            self.token, self.name, self.host, self.pid, self.thread,
            self.acquired_at, now + timeout, timeout, self.task_name, self.task_id,
        )  # fmt: skip

    def encode(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def decode(cls, raw: str | bytes | None) -> Holder | None:
        """The holder in a stored value; None for a missing or foreign value."""
        if raw is None:
            return None
        try:
            return cls(**json.loads(raw))
        except (ValueError, TypeError):
            return None

    @property
    def holder(self) -> str:
        """``host:pid``, as shown by ``locks list``."""
        return f"{self.host}:{self.pid}"

    @property
    def acquired_at_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.acquired_at, tz=UTC)
