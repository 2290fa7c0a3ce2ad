"""The admin changelist of held locks, without a table: a query object over the cache.

Django's ``ChangeList`` pages a QuerySet. ``HeldLockQuery`` offers the part of that protocol
the admin uses here (``count()``, slicing, iteration, ``filter(pk__in=...)``), backed by the
inventory: one scan of the prefix counts the matching locks and keeps only the page, so a
page costs one pass and the memory of one batch plus the page, however many locks are held.
Ordered by age ("held for"), the pass reads every matching value and keeps the ``offset +
limit`` youngest (or oldest) on a heap. The page's rows then learn how many wait in line for
each (``waiters``; Redis only), in one more call.

Counts and pages are in names. A limited name (``limit=N``) shows a row per holder, together
(the inventory yields them so), so a page of ``limit`` names may hold more rows than that;
ordered by age, a limited name takes the place of its oldest (or youngest) holder.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from itertools import groupby
from operator import attrgetter
from typing import Any

from django.contrib import messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ORDER_VAR, ChangeList
from django.core.paginator import InvalidPage
from django.utils.translation import gettext as _

from ..exceptions import LockError
from ..models import HeldLock
from .inventory import HeldLockInfo, Inventory, containing
from .waiters import waiting

#: the admin column a page may be ordered by: how long each lock has been held
HELD_FOR = "held_for"
ORDERS = (None, HELD_FOR, f"-{HELD_FOR}")


class HeldLockQuery:
    """The held locks whose names contain ``search`` (any case), optionally among ``names``;
    in scan order, or by how long they have been held (``order``: ``HELD_FOR``, youngest
    first, or ``-HELD_FOR``)."""

    #: entries come in the backend's scan order (or by age), the same for every page of a stable set
    ordered = True

    def __init__(
        self,
        cache: str | None = None,
        search: str = "",
        names: Iterable[str] | None = None,
        order: str | None = None,
    ):
        if order not in ORDERS:
            raise ValueError(f"held locks are ordered by one of {ORDERS}, not {order!r}")
        self.cache = cache
        self.text = search
        self.names = None if names is None else list(names)
        self.order = order
        self.model = HeldLock
        self._count: int | None = None

    def search(self, text: str) -> HeldLockQuery:
        return HeldLockQuery(self.cache, text, self.names, self.order)

    def filter(self, *, pk__in: Iterable[str]) -> HeldLockQuery:
        """The admin's selection: only the named locks."""
        return HeldLockQuery(self.cache, self.text, pk__in, self.order)

    def ordered_by(self, order: str | None) -> HeldLockQuery:
        return HeldLockQuery(self.cache, self.text, self.names, order)

    def _infos(self, offset: int = 0, limit: int | None = None) -> tuple[int, list[HeldLockInfo]]:
        inventory = Inventory(self.cache)
        matches = containing(self.text) if self.text else None
        if self.order is not None and limit != 0:
            found = inventory.find(self.names) if self.names is not None else inventory.each(matches)
            return by_age(found, self.order == f"-{HELD_FOR}", offset, limit)
        if self.names is not None:
            found = (e for e in inventory.find(self.names) if matches is None or matches(e.name))
            return by_name(found, offset, limit)
        if limit is None:
            return by_name(inventory.each(matches), offset, None)
        return inventory.page(matches, offset, limit)

    def page(self, offset: int, limit: int) -> list[HeldLock]:
        """Every holder of ``limit`` locks from ``offset``; the count comes with it, in the same pass."""
        self._count, infos = self._infos(offset, limit)
        return [HeldLock.from_info(info) for info in infos]

    def count(self) -> int:
        if self._count is None:
            self._count = self._infos(0, 0)[0]
        return self._count

    def __getitem__(self, index: slice) -> list[HeldLock]:
        if not isinstance(index, slice) or index.step is not None:
            raise TypeError("held locks are sliced by page: query[start:stop]")
        start = index.start or 0
        if index.stop is None:
            return [HeldLock.from_info(info) for info in self._infos(start)[1]]
        return self.page(start, max(index.stop - start, 0))

    def __iter__(self) -> Iterator[HeldLock]:
        if self.names is not None:
            yield from self[:]
            return
        matches = containing(self.text) if self.text else None
        for info in Inventory(self.cache).each(matches):
            yield HeldLock.from_info(info)


#: a lock's rows: one, or a limited name's holders
Rows = list[HeldLockInfo]


def names_of(entries: Iterable[HeldLockInfo]) -> Iterator[Rows]:
    """The rows of each lock in ``entries``, whose rows come together."""
    for _name, group in groupby(entries, key=attrgetter("name")):
        yield list(group)


def by_name(
    entries: Iterable[HeldLockInfo], offset: int, limit: int | None
) -> tuple[int, list[HeldLockInfo]]:
    """How many locks ``entries`` hold, and every row of ``limit`` of them from ``offset``."""
    count, kept = 0, []
    for group in names_of(entries):
        if offset <= count and (limit is None or count < offset + limit):
            kept.extend(group)
        count += 1
    return count, kept


def by_age(
    entries: Iterable[HeldLockInfo], oldest_first: bool, offset: int, limit: int | None
) -> tuple[int, list[HeldLockInfo]]:
    """How many locks ``entries`` hold, and every row of ``limit`` of them from ``offset`` ordered
    by age (a limited name by its first holder so ordered, its holders in that order too); only
    ``offset + limit`` locks are kept while they pass. A foreign value (no age) comes last."""
    count = 0

    def age(entry: HeldLockInfo) -> tuple[bool, float]:
        acquired = entry.acquired_at.timestamp() if entry.acquired_at is not None else 0.0
        return entry.acquired_at is None, acquired if oldest_first else -acquired

    def counted() -> Iterator[Rows]:
        nonlocal count
        for group in names_of(entries):
            count += 1
            yield sorted(group, key=age)

    def first(group: Rows) -> tuple[bool, float]:
        return age(group[0])

    if limit is None:
        ordered = sorted(counted(), key=first)
    else:
        ordered = heapq.nsmallest(offset + limit, counted(), key=first)
    return count, [entry for group in ordered[offset:] for entry in group]


class HeldLockChangeList(ChangeList):
    """A ChangeList over ``HeldLockQuery``: search by name, pagination, no filters or sorting."""

    def get_queryset(self, request: Any, exclude_parameters: Any = None) -> HeldLockQuery:
        self.filter_specs, self.has_filters, self.has_active_filters = [], False, False
        self.clear_all_filters_qs = self.get_query_string()
        return self.root_queryset.search(self.query).ordered_by(self._order())

    def _order(self) -> str | None:
        """The order the ``o`` parameter asks for: by the "held for" column, or none."""
        for part in str(self.params.get(ORDER_VAR, "")).split("."):
            _, descending, index = part.rpartition("-")
            if index.isdigit() and list(self.list_display[int(index) : int(index) + 1]) == [HELD_FOR]:
                return descending + HELD_FOR
        return None

    def get_results(self, request: Any) -> None:
        """The page of locks; when the cache fails, none, and the error as a message.

        A POST (the force-clear action) reports its own errors, then redirects here."""
        try:
            self._get_results(request)
        except LockError as exc:
            if request.method != "POST":
                error = _("The lock cache did not answer, so no locks are shown: %(error)s")
                self.model_admin.message_user(request, error % {"error": exc}, messages.ERROR)
            self.result_count, self.result_list, self.full_result_count = 0, [], None
            self.show_full_result_count, self.show_admin_actions = False, True
            self.can_show_all, self.multi_page = True, False
            self.paginator = self.model_admin.get_paginator(request, [], self.list_per_page)

    def _get_results(self, request: Any) -> None:
        query: HeldLockQuery = self.queryset
        if self.show_all:
            result_list = query.page(0, self.list_max_show_all)
        else:
            result_list = query.page(max(self.page_num - 1, 0) * self.list_per_page, self.list_per_page)
        paginator = self.model_admin.get_paginator(request, query, self.list_per_page)
        count = query.count()
        self.can_show_all = count <= self.list_max_show_all
        self.multi_page = count > self.list_per_page
        if self.show_all and not self.can_show_all:
            result_list = query.page(max(self.page_num - 1, 0) * self.list_per_page, self.list_per_page)
        if self.multi_page and not (self.show_all and self.can_show_all):
            try:
                paginator.validate_number(self.page_num)
            except InvalidPage:
                raise IncorrectLookupParameters from None
        self.result_count = count
        self.show_full_result_count = False
        self.show_admin_actions = True
        self.full_result_count = None
        self.result_list = result_list
        self.paginator = paginator
        counts = waiting([held.name for held in result_list], query.cache)
        for held, count in zip(result_list, counts or [None] * len(result_list), strict=True):
            held.waiters = count
