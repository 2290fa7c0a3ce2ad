"""Django's ``DatabaseCache``, made safe: tasklock's own statements, in autocommit.

``DatabaseCache.add`` SELECTs then UPDATEs an expired row, so two processes can both "add";
and it turns every database error into a silent False. Here an expired row is deleted
first, so acquiring is always a plain INSERT that the primary key makes atomic, and errors
surface. Inside ``transaction.atomic()`` a lock would be invisible until commit and
released by a rollback, so the adapter refuses to lock there. A force-clear is no lock: it
runs inside the caller's transaction too (``ATOMIC_REQUESTS``) and takes effect at its commit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import DatabaseError, IntegrityError, connections, router, transaction
from django.utils import timezone

from ..exceptions import LockError
from .base import LockBackend, Stored

#: rows fetched per query while listing
SCAN_BATCH = 1000
#: keys per ``IN (...)`` when reading several locks
READ_BATCH = 500
INSERT = "INSERT INTO {table} (cache_key, value, expires) VALUES (%s, %s, %s)"
#: the fencing counter's row never expires
NEVER = datetime(9999, 12, 31, tzinfo=UTC)


class DatabaseBackend(LockBackend):
    family = "database"
    errors = (DatabaseError,)
    fences = True

    def __init__(self, cache: Any) -> None:
        super().__init__(cache)
        self.model = cache.cache_model_class
        self.table = cache._table
        #: the fencing counter's row is known to exist (checked once, again after a cull)
        self._fence_ready = False

    def _database(self) -> Any:
        return connections[router.db_for_write(self.model)]

    def server(self, key: str | None) -> str:
        database = self._database()
        host, port = database.settings_dict.get("HOST"), database.settings_dict.get("PORT")
        at = f" at {host}:{port}" if host and port else f" at {host}" if host else ""
        return f"table {self.table!r} in {database.vendor} database {database.alias!r}{at}"

    def _connection(self) -> Any:
        """The write connection, in autocommit."""
        connection = self._database()
        if connection.in_atomic_block:
            raise LockError(
                "tasklock's database cache cannot lock inside transaction.atomic(): the lock "
                "would stay invisible to other processes until commit and vanish on rollback"
            )
        return connection

    def _sql(self, connection: Any, statement: str) -> str:
        return statement.format(table=connection.ops.quote_name(self.table))

    @staticmethod
    def _at(connection: Any, moment: datetime) -> Any:
        return connection.ops.adapt_datetimefield_value(moment)

    def add(self, key: str, value: str, timeout: float) -> int:
        """Delete the row if expired, INSERT, and take the next fencing token, in one transaction.

        The counter row's lock orders the tokens: a later grant waits for the earlier one's
        commit, so tokens grow in grant order. A token is the counter + 1, or the clock in
        microseconds when larger, so it keeps growing if the row is culled."""
        return self._take(key, value, timeout, None)

    def convert(self, key: str, value: str, new_value: str, timeout: float) -> int:
        """Delete the live row holding ``value``, INSERT ``new_value`` and take a token, in one
        transaction (a concurrent INSERT waits on the deleted row, then finds ours)."""
        return self._take(key, new_value, timeout, value)

    def _take(self, key: str, value: str, timeout: float, replacing: str | None) -> int:
        connection = self._connection()
        now = timezone.now()
        expires = now + timedelta(seconds=timeout)
        fence = self._fence_row(connection)
        try:
            with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
                if replacing is None:
                    cursor.execute(
                        self._sql(connection, "DELETE FROM {table} WHERE cache_key = %s AND expires < %s"),
                        [key, self._at(connection, now)],
                    )
                else:
                    cursor.execute(
                        self._sql(
                            connection,
                            "DELETE FROM {table} WHERE cache_key = %s AND value = %s AND expires >= %s",
                        ),
                        [key, replacing, self._at(connection, now)],
                    )
                    if cursor.rowcount != 1:
                        return 0
                cursor.execute(
                    self._sql(connection, INSERT),
                    [key, value, self._at(connection, expires)],
                )
                for_update = " FOR UPDATE" if connection.features.has_select_for_update else ""
                cursor.execute(
                    self._sql(connection, f"SELECT value FROM {{table}} WHERE cache_key = %s{for_update}"),
                    [fence],
                )
                row = cursor.fetchone()
                token = max(int(row[0]) + 1 if row else 1, time.time_ns() // 1000)
                cursor.execute(
                    self._sql(connection, "UPDATE {table} SET value = %s WHERE cache_key = %s"),
                    [str(token), fence],
                )
                self._fence_ready = cursor.rowcount == 1
        except IntegrityError:
            return 0
        return token

    def _fence_row(self, connection: Any) -> str:
        """The fencing counter's key, its row created if missing (in its own statement, so
        that two first acquirers cannot make each other's acquire fail)."""
        fence = self.fence_key()
        if self._fence_ready:
            return fence
        try:
            with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
                cursor.execute(
                    self._sql(connection, INSERT),
                    [fence, "0", self._at(connection, NEVER)],
                )
        except IntegrityError:
            pass  # it exists: made by another process, or before
        self._fence_ready = True
        return fence

    def get(self, key: str) -> str | None:
        connection = self._database()
        with connection.cursor() as cursor:
            cursor.execute(
                self._sql(connection, "SELECT value FROM {table} WHERE cache_key = %s AND expires >= %s"),
                [key, self._at(connection, timezone.now())],
            )
            row = cursor.fetchone()
        return None if row is None else row[0]

    def delete_if(self, key: str, value: str) -> bool:
        connection = self._connection()
        with connection.cursor() as cursor:
            cursor.execute(
                self._sql(
                    connection,
                    "DELETE FROM {table} WHERE cache_key = %s AND value = %s AND expires >= %s",
                ),
                [key, value, self._at(connection, timezone.now())],
            )
            return cursor.rowcount == 1

    def replace_if(self, key: str, value: str, new_value: str, timeout: float) -> bool:
        connection = self._connection()
        now = timezone.now()
        with connection.cursor() as cursor:
            cursor.execute(
                self._sql(
                    connection,
                    "UPDATE {table} SET value = %s, expires = %s "
                    "WHERE cache_key = %s AND value = %s AND expires >= %s",
                ),
                [
                    new_value,
                    self._at(connection, now + timedelta(seconds=timeout)),
                    key,
                    value,
                    self._at(connection, now),
                ],
            )
            return cursor.rowcount == 1

    def scan(self) -> Iterator[list[Stored]]:
        """The live rows whose key starts with the prefix, in key order, a batch per query.

        ``LIKE`` ignores case on some vendors (SQLite, MySQL's usual collations), so the rows
        it finds are checked again here, case-sensitively.
        """
        connection = self._database()
        prefix = self.key_start()
        start = connection.ops.prep_for_like_query(prefix) + "%"
        query = self._sql(
            connection,
            f"SELECT cache_key, value FROM {{table}} WHERE cache_key {connection.operators['startswith']} "
            "AND cache_key > %s AND expires >= %s ORDER BY cache_key LIMIT %s",
        )
        after = ""
        while True:
            with connection.cursor() as cursor:
                cursor.execute(query, [start, after, self._at(connection, timezone.now()), SCAN_BATCH])
                rows = cursor.fetchall()
            batch = [Stored(key, value) for key, value in rows if key.startswith(prefix)]
            if batch:
                yield batch
            if len(rows) < SCAN_BATCH:
                return
            after = rows[-1][0]

    def clear(self, key: str) -> str | None:
        """Read and delete the live row in one transaction (a savepoint inside the caller's)."""
        connection = self._database()
        locking = " FOR UPDATE" if connection.features.has_select_for_update else ""
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute(
                self._sql(
                    connection, f"SELECT value FROM {{table}} WHERE cache_key = %s AND expires >= %s{locking}"
                ),
                [key, self._at(connection, timezone.now())],
            )
            row = cursor.fetchone()
            if row is None:
                return None
            cursor.execute(self._sql(connection, "DELETE FROM {table} WHERE cache_key = %s"), [key])
        return row[0]

    def read(self, keys: list[str]) -> list[Stored]:
        connection = self._database()
        found: dict[str, str] = {}
        for first in range(0, len(keys), READ_BATCH):
            batch = keys[first : first + READ_BATCH]
            marks = ", ".join(["%s"] * len(batch))
            with connection.cursor() as cursor:
                cursor.execute(
                    self._sql(
                        connection,
                        "SELECT cache_key, value FROM {table} "
                        f"WHERE cache_key IN ({marks}) AND expires >= %s",
                    ),
                    [*batch, self._at(connection, timezone.now())],
                )
                found.update(cursor.fetchall())
        return [Stored(key, found.get(key)) for key in keys]
