"""``manage.py locks list`` and ``manage.py locks clear``: see and force-clear held locks.

Names, holders and task fields come from task arguments and cache values: the table shows
their non-printable characters escaped (``\\x1b``, ``\\n``), so none reaches the terminal.
A limited name (``limit=N``) has a row per holder, named ``name (2/3)``: 2 live holders of 3;
``clear`` counts names, and frees every holder of each.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...exceptions import LockError
from ...operations.clearing import force_clear, os_user
from ...operations.inventory import HeldLockInfo, Inventory, glob, held_locks

COLUMNS = ("name", "state", "holder", "task_name", "task_id", "acquired_at", "expires_in")


class Command(BaseCommand):
    help = "List the locks tasklock holds, or force-clear them."

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="subcommand", required=True, metavar="{list,clear}")
        listing = commands.add_parser("list", help="Show who holds which lock.")
        listing.add_argument("--json", action="store_true", help="Print a JSON array for scripts.")
        listing.add_argument("--match", metavar="GLOB", help="Only names matching this shell glob.")
        clearing = commands.add_parser("clear", help="Force-clear locks, whoever holds them.")
        for subparser in (listing, clearing):
            subparser.add_argument(
                "--cache", help='The cache alias holding the locks (default: TASKLOCK["CACHE"]).'
            )
        clearing.add_argument("names", nargs="*", metavar="NAME", help="Lock names to clear.")
        clearing.add_argument("--match", metavar="GLOB", help="Clear every lock whose name matches.")
        clearing.add_argument("--all", action="store_true", help="Clear every held lock.")
        clearing.add_argument(
            "--dry-run", action="store_true", help="Show what would be cleared; clear nothing."
        )
        clearing.add_argument(
            "--yes",
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="Clear without asking for confirmation.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            inventory = Inventory(options.get("cache"))
            if options["subcommand"] == "list":
                self.list_locks(inventory, options)
            else:
                self.clear_locks(inventory, options)
        except (LockError, ImproperlyConfigured) as exc:
            raise CommandError(str(exc)) from exc

    def list_locks(self, inventory: Inventory, options: dict[str, Any]) -> None:
        entries = sorted(held_locks(options.get("match") or None, inventory.alias), key=lambda e: e.name)
        if options.get("json"):
            self.stdout.write(json.dumps([entry.as_json() for entry in entries], ensure_ascii=False))
        elif entries:
            self.stdout.write(table(entries))
        else:
            self.stdout.write("No locks held.")

    def clear_locks(self, inventory: Inventory, options: dict[str, Any]) -> None:
        names, pattern, everything = options.get("names") or [], options.get("match"), options.get("all")
        if sum((bool(names), bool(pattern), bool(everything))) != 1:
            raise CommandError("locks clear takes lock names, or --match GLOB, or --all (exactly one)")
        if names:
            entries = inventory.find(names)
            missing = sorted(set(names) - {entry.name for entry in entries})
        else:
            entries = inventory.entries(glob(pattern) if pattern else None)
            missing = []
        for name in missing:
            self.stderr.write(f"No lock named {name!r} is held.")
        if entries:
            self.stdout.write(table(entries))
        held = list(dict.fromkeys(entry.name for entry in entries))
        if options.get("dry_run"):
            self.stdout.write(f"Would clear {plural(len(held))} (dry run).")
        elif held and self.confirmed(len(held), options):
            gone = self.clear_names(inventory, held)
            missing.extend(gone)
        elif not entries:
            self.stdout.write("No locks to clear.")
        if missing and names:
            listed = ", ".join(map(repr, missing))
            raise CommandError(f"{plural(len(missing))} not held: {listed}", returncode=1)

    def confirmed(self, count: int, options: dict[str, Any]) -> bool:
        if not options.get("interactive", True):
            return True
        try:
            answer = input(f"Force-clear {plural(count)}? Their holders keep running unlocked. [y/N] ")
        except EOFError:
            raise CommandError(
                "Nothing cleared: no answer to the confirmation (standard input is closed); "
                "pass --yes to clear without asking",
                returncode=1,
            ) from None
        if answer.strip().lower() in ("y", "yes"):
            return True
        self.stdout.write("Nothing cleared.")
        return False

    def clear_names(self, inventory: Inventory, names: list[str]) -> list[str]:
        """Clear each named lock (every holder); the names already gone by then."""
        by = os_user()
        cleared, gone = 0, []
        for name in names:
            if force_clear(name, by=by, via="command", cache=inventory.alias):
                cleared += 1
            else:
                gone.append(name)
        self.stdout.write(self.style.SUCCESS(f"Cleared {plural(cleared)}."))
        return gone


def plural(count: int) -> str:
    return f"{count} lock{'' if count == 1 else 's'}"


def printable(text: str) -> str:
    """``text`` with each non-printable character escaped as in a Python literal."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def table(entries: list[HeldLockInfo]) -> str:
    """The entries as an aligned text table, one row per holder; "-" for what is unknown."""
    rows = [COLUMNS] + [
        (
            printable(entry.name if entry.limit == 1 else f"{entry.name} ({entry.holders}/{entry.limit})"),
            entry.state,
            printable(entry.holder),
            printable(entry.task_name or "-"),
            printable(entry.task_id or "-"),
            "-" if entry.acquired_at is None else entry.acquired_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
            "-" if entry.expires_in is None else f"{entry.expires_in:.1f}s",
        )
        for entry in entries
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )
