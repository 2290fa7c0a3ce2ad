"""``HeldLock``: the admin's placeholder for a held lock. No table: entries come from the cache."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import models
from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from .operations.inventory import HeldLockInfo


class HeldLock(models.Model):
    """A lock held in ``TASKLOCK["CACHE"]``; the primary key is the lock's name.

    ``managed = False``: ``migrate`` creates no table, only the ``view_heldlock`` and
    ``delete_heldlock`` permissions. Instances are built from the cache, never saved.
    """

    name = models.TextField(_("name"), primary_key=True)
    holder = models.TextField(_("holder"), help_text=_("host:pid"))
    # None, as in ``locks list --json``, for a lock taken outside a task; never saved
    task_name = models.TextField(_("task name"), null=True)  # noqa: DJ001
    task_id = models.TextField(_("task id"), null=True)  # noqa: DJ001
    acquired_at = models.DateTimeField(_("acquired at"))
    expires_in = models.FloatField(_("expires in (s)"))
    state = models.TextField(_("state"), help_text=_("running, or queued: the task waits in the queue"))
    #: not fields (no migration): the name's limit, and how many live holders it has
    limit: int = 1
    holders: int = 1

    class Meta:
        managed = False
        default_permissions = ("view", "delete")
        verbose_name = _("held lock")
        verbose_name_plural = _("held locks")

    def __str__(self) -> str:
        return self.name

    @classmethod
    def from_info(cls, info: HeldLockInfo) -> HeldLock:
        held = cls(
            name=info.name,
            holder=info.holder,
            task_name=info.task_name,
            task_id=info.task_id,
            acquired_at=info.acquired_at,
            expires_in=info.expires_in,
            state=info.state,
        )
        held.limit, held.holders = info.limit, info.holders
        return held
