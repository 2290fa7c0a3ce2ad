"""Django's ``DatabaseCache``, made safe: tasklock's own statements, in autocommit.

``DatabaseCache.add`` SELECTs then UPDATEs an expired row, so two processes can both "add";
and it turns every database error into a silent False. Here an expired row is deleted
first, so acquiring is always a plain INSERT that the primary key makes atomic, and errors
surface. Inside ``transaction.atomic()`` a lock would be invisible until commit and
released by a rollback, so the adapter refuses to run there.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, IntegrityError, connections, router
from django.utils import timezone

from ..exceptions import LockError
from .base import LockBackend, Stored

#: rows fetched per query while listing
SCAN_BATCH = 1000
#: keys per ``IN (...)`` when reading several locks
READ_BATCH = 500


class DatabaseBackend(LockBackend):
    family = "database"
    errors = (DatabaseError,)

    def __init__(self, cache: Any) -> None:
        super().__init__(cache)
        self.model = cache.cache_model_class
        self.table = cache._table

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

    def add(self, key: str, value: str, timeout: float) -> bool:
        connection = self._connection()
        now = timezone.now()
        expires = now + timedelta(seconds=timeout)
        with connection.cursor() as cursor:
            cursor.execute(
                self._sql(connection, "DELETE FROM {table} WHERE cache_key = %s AND expires < %s"),
                [key, self._at(connection, now)],
            )
            try:
                cursor.execute(
                    self._sql(
                        connection, "INSERT INTO {table} (cache_key, value, expires) VALUES (%s, %s, %s)"
                    ),
                    [key, value, self._at(connection, expires)],
                )
            except IntegrityError:
                return False
        return True

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
        """The live rows whose key starts with the prefix, in key order, a batch per query."""
        connection = self._database()
        start = connection.ops.prep_for_like_query(self.key_start()) + "%"
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
            if rows:
                yield [Stored(key, value) for key, value in rows]
            if len(rows) < SCAN_BATCH:
                return
            after = rows[-1][0]

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
