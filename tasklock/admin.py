"""The "Held locks" admin page: see who holds what, and force-clear a stuck lock.

``HeldLock`` has no table (django-rq's placeholder-model pattern): the changelist reads the
lock cache through ``HeldLockChangeList``. Viewing needs ``tasklock.view_heldlock``; the
``force_clear`` action needs ``tasklock.delete_heldlock`` and follows ``delete_selected``'s
protocol: the selected names as ``_selected_action``, a confirmation page, then the same POST
with ``post=yes``; ``select_across=1`` takes every lock matching the current search.

A limited name (``limit=N``) has a row per holder, its "limit" column saying how many of
``limit`` hold it ("2/3"); selecting either row selects the name, and force-clearing it frees
every holder (its ``LogEntry`` says how many).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.models import DELETION, LogEntry
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.timezone import localtime
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .exceptions import LockError
from .models import HeldLock
from .operations.changelist import HELD_FOR, HeldLockChangeList, HeldLockQuery
from .operations.clearing import force_clear

#: the most names the confirmation page lists; it says how many more there are
CONFIRM_SHOWN = 100
#: LogEntry rows written per query
LOG_BATCH = 500


def duration(seconds: float) -> str:
    """A lock's age, as precise as it matters: "0.4 s", "42 s", "3 min 05 s", "2 h 07 min", "3 d 4 h"."""
    seconds = max(seconds, 0.0)
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    minutes, hours, days = whole // 60, whole // 3600, whole // 86400
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{minutes} min {whole % 60:02d} s"
    if whole < 86400:
        return f"{hours} h {minutes % 60:02d} min"
    return f"{days} d {hours % 24} h"


@admin.register(HeldLock)
class HeldLockAdmin(admin.ModelAdmin):
    list_display = (
        "name", "slots", "state", "holder", "task_name", "task_id",
        "acquired", HELD_FOR, "waiting", "expires_in",
    )  # fmt: skip
    list_display_links = None
    search_fields = ("name",)
    search_help_text = _("Part of a lock name, in any case.")
    sortable_by = (HELD_FOR,)
    list_per_page = 100
    show_full_result_count = False
    actions = ["force_clear"]

    @admin.display(description=_("limit"), empty_value="-")
    def slots(self, held: HeldLock) -> str | None:
        """A limited name's live holders of its limit ("2/3"); None for an ordinary lock."""
        return f"{held.holders}/{held.limit}" if held.limit > 1 else None

    @admin.display(description=_("acquired at"), empty_value="-")
    def acquired(self, held: HeldLock) -> str | None:
        """To the second, in the current time zone: lock ages are short. None for a foreign value."""
        return None if held.acquired_at is None else date_format(localtime(held.acquired_at), "Y-m-d H:i:s T")

    @admin.display(description=_("held for"), ordering="-acquired_at", empty_value="-")
    def held_for(self, held: HeldLock) -> str | None:
        """How long the lock has been held (by this holder); None for a foreign value."""
        if held.acquired_at is None:
            return None
        return duration((timezone.now() - held.acquired_at).total_seconds())

    @admin.display(description=_("waiting"), empty_value="-")
    def waiting(self, held: HeldLock) -> int | None:
        """How many wait in line for it (Redis); None where waiters poll and cannot be counted."""
        return getattr(held, "waiters", None)

    def get_urls(self) -> list[Any]:
        """The changelist only: a held lock has no change, add, history or delete page."""
        name = f"{self.opts.app_label}_{self.opts.model_name}_changelist"
        return [path("", self.admin_site.admin_view(self.changelist_view), name=name)]

    def get_queryset(self, request: HttpRequest) -> HeldLockQuery:  # type: ignore[override]
        return HeldLockQuery()

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[HeldLockChangeList]:
        return HeldLockChangeList

    def get_actions(self, request: HttpRequest, action_location: Any = None) -> dict[str, Any]:
        """The site's ``delete_selected`` left out: it deletes through the ORM.

        ``action_location`` is Django 6.1's argument; 5.2 calls this without it.
        """
        where = {} if action_location is None else {"action_location": action_location}
        actions = super().get_actions(request, **where)
        actions.pop("delete_selected", None)
        return actions

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(permissions=["delete"], description=_("Force-clear selected held locks"))
    def force_clear(self, request: HttpRequest, queryset: HeldLockQuery) -> HttpResponse | None:
        """The confirmation page, or the clearing; a cache error is a message, and back to the list."""
        try:
            return self._force_clear(request, queryset)
        except LockError as exc:
            self.message_user(
                request, _("Nothing more was cleared: %(error)s") % {"error": exc}, messages.ERROR
            )
            return None

    def _force_clear(self, request: HttpRequest, queryset: HeldLockQuery) -> HttpResponse | None:
        if request.POST.get("post"):
            self._clear(request, queryset)
            return None
        names = queryset.ordered_by(None)
        shown = names.page(0, CONFIRM_SHOWN)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Are you sure?"),
            "subtitle": None,
            "opts": self.opts,
            "held_locks": shown,
            "more": max(names.count() - len({held.name for held in shown}), 0),
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across") == "1",
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/tasklock/heldlock/force_clear_confirmation.html", context)

    def _clear(self, request: HttpRequest, queryset: HeldLockQuery) -> None:
        """Clear every selected lock (each holder of a limited name); a LogEntry for each one
        actually cleared. A lock's rows come together, so each name is cleared once."""
        by = request.user.get_username()
        batch: list[HeldLock] = []
        cleared = gone = 0
        last = None
        for held in queryset:
            if held.name == last:
                continue
            last = held.name
            removed = force_clear(held.name, by=by, via="admin", cache=queryset.cache)
            if not removed:
                gone += 1
                continue
            cleared += 1
            if removed[0].limit > 1:
                self._log(request, [held], limited_message(len(removed), removed[0].limit))
            else:
                batch.append(held)
            if len(batch) >= LOG_BATCH:
                self._log(request, batch)
                batch = []
        self._log(request, batch)
        message = ngettext(
            "Force-cleared %(count)d held lock.", "Force-cleared %(count)d held locks.", cleared
        )
        self.message_user(request, message % {"count": cleared}, messages.SUCCESS)
        if gone:
            self.message_user(
                request,
                ngettext("%(count)d lock was already gone.", "%(count)d locks were already gone.", gone)
                % {"count": gone},
                messages.WARNING,
            )

    @staticmethod
    def _log(
        request: HttpRequest, cleared: list[HeldLock], message: str = "Force-cleared the held lock."
    ) -> None:
        if cleared:
            LogEntry.objects.log_actions(request.user.pk, cleared, DELETION, change_message=message)


def limited_message(holders: int, limit: int) -> str:
    """The ``LogEntry`` message of a limited name force-cleared."""
    return f"Force-cleared the held lock: its {holders} of {limit} holders."
