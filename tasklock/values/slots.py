"""A name held by up to ``limit`` holders at once: the record its key stores when ``limit`` > 1.

A ``limit=1`` lock stores its holder's metadata (``values.holder``) at the name's key. A
``limit=N`` lock (N > 1) stores one record there instead::

    {"limit":3,"slots":[[<deadline ms>,"<holder JSON>"],...]}

one slot per holder, each with its own deadline (the server's clock on Redis, the writer's
wall clock elsewhere). Every change rewrites the record atomically (a script on Redis, a
compare-and-swap elsewhere); a slot past its deadline is dropped by the next change. The key
itself lives as long as its longest slot. One key per name is what makes a mixed limit
visible to every acquirer: a ``limit=1`` lock's ``add`` fails on a record, and a ``limit=N``
acquirer reads a plain holder there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .holder import Holder

#: how every record starts (and no holder's metadata does: that starts with ``{"token":``)
RECORD_START = '{"limit":'
#: how every holder's metadata starts
HOLDER_START = '{"token":'


@dataclass(frozen=True, slots=True)
class Slot:
    """One holder of a limited name: until when (epoch ms) and its stored metadata."""

    deadline_ms: int
    value: str

    @property
    def holder(self) -> Holder | None:
        return Holder.decode(self.value)


@dataclass(frozen=True, slots=True)
class Record:
    """The holders of a ``limit=N`` name."""

    limit: int
    slots: tuple[Slot, ...] = ()

    @classmethod
    def decode(cls, stored: str | None) -> Record | None:
        """The record in a stored value; None for anything else (a holder, a foreign value)."""
        if stored is None or not stored.startswith(RECORD_START):
            return None
        try:
            data = json.loads(stored)
            slots = tuple(Slot(int(deadline), value) for deadline, value in data["slots"])
            limit = data["limit"]
        except (ValueError, TypeError, KeyError, RecursionError):
            return None
        if type(limit) is not int or not all(isinstance(slot.value, str) for slot in slots):
            return None
        return cls(limit, slots)

    def encode(self) -> str:
        slots = ",".join(
            f"[{slot.deadline_ms},{json.dumps(slot.value, ensure_ascii=False)}]" for slot in self.slots
        )
        return f'{RECORD_START}{self.limit},"slots":[{slots}]}}'

    def live(self, now_ms: int) -> Record:
        """Without the slots whose deadline has passed."""
        return Record(self.limit, tuple(slot for slot in self.slots if slot.deadline_ms > now_ms))

    def full(self) -> bool:
        return len(self.slots) >= self.limit

    def holds(self, value: str) -> bool:
        return any(slot.value == value for slot in self.slots)

    def value_of(self, token: str) -> str | None:
        """The stored metadata of the holder with ``token``, if it holds a slot."""
        for slot in self.slots:
            holder = slot.holder
            if holder is not None and holder.token == token:
                return slot.value
        return None

    def adding(self, value: str, deadline_ms: int) -> Record:
        return Record(self.limit, (*self.slots, Slot(deadline_ms, value)))

    def without(self, value: str) -> Record:
        return Record(self.limit, tuple(slot for slot in self.slots if slot.value != value))

    def replacing(self, value: str, new_value: str, deadline_ms: int) -> Record:
        slots = (Slot(deadline_ms, new_value) if slot.value == value else slot for slot in self.slots)
        return Record(self.limit, tuple(slots))

    def seconds_left(self, now_ms: int) -> float:
        """How long the key must live: until the last slot's deadline."""
        return max(0.001, (max(slot.deadline_ms for slot in self.slots) - now_ms) / 1000)


def held_values(stored: str | None) -> tuple[str, ...]:
    """Each holder's metadata in a stored value: the value itself, or each slot of a record."""
    if stored is None:
        return ()
    record = Record.decode(stored)
    return (stored,) if record is None else tuple(slot.value for slot in record.slots)


def limit_held(stored: str | None) -> int:
    """The limit a stored value was written with: a record's, else 1."""
    record = Record.decode(stored)
    return 1 if record is None else record.limit
