"""Signals sent by tasklock; every one is sent with ``sender=Lock``.

- ``lock_acquired(lock, waited)``: ``waited`` is the seconds spent acquiring.
- ``lock_released(lock, released, held_for)``: ``released`` is False when the lock was
  already gone (expired, cleared, taken) or the release failed.
- ``lock_contended(name, policy, task_id)``: a ``task_lock`` call found the lock held.
- ``lock_cleared(name, by, via)``: an operator force-cleared a lock; ``via`` is
  ``"admin"``, ``"command"`` or ``"python"``.
- ``lock_lost(lock, error)``: a renewal found the lock gone (``error`` None) or could not
  reach the cache before the lease ran out (``error``: the ``LockError``).
- ``lock_reaped(name, holder, reason)``: tasklock freed the lock of a dead holder;
  ``reason`` is ``"worker-lost"``, ``"time-limit"``, ``"revoked"`` or ``"dead-process"``.
- ``lock_attempted(lock, outcome, waited, blocking)``: an ``acquire()`` ended; ``outcome``
  is ``"acquired"``, ``"contended"`` (held by someone else, or the wait ran out) or
  ``"error"`` (a ``LockError``, raised next); ``waited`` is the seconds it took.
- ``lock_duplicate(name, task_name, task_id, cache)``: a ``UniqueTask`` publish found its
  queue lock ``name`` held and published nothing; ``task_id`` is the existing task's (or None).
"""

from django.dispatch import Signal

lock_acquired = Signal()
lock_released = Signal()
lock_contended = Signal()
lock_cleared = Signal()
lock_lost = Signal()
lock_reaped = Signal()
#: sent on every acquire: its receivers are looked up once per sender, not at each send
lock_attempted = Signal(use_caching=True)
lock_duplicate = Signal()
