"""One small SQL surface over the run's database, SQLite or PostgreSQL.

The ledger and the audit log write a handful of statements; writing each of
them twice (``?`` vs ``%s``, aiosqlite vs psycopg) would be the same logic in
two places. SQL here is written once with ``%s`` placeholders and portable
types; the SQLite adapter rewrites the placeholders.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal, Protocol

Dialect = Literal["sqlite", "postgres"]


class Session(Protocol):
    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...
    async def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Many rows in one go (PostgreSQL: one COPY, far cheaper per row than a pipelined INSERT)."""
        ...
    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...


class Database(Protocol):
    dialect: Dialect

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...
    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...
    def transaction(self) -> Any:
        """``async with db.transaction() as session``: statements that commit or roll back together."""
        ...


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


class _SqliteSession:
    def __init__(self, connection: Any) -> None:
        self._db = connection

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = await self._db.execute(sql.replace("%s", "?"), tuple(params))
        count = cursor.rowcount
        await cursor.close()
        return count

    async def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        await self._db.executemany(_insert_sql(table, columns), [tuple(row) for row in rows])

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        async with self._db.execute(sql.replace("%s", "?"), tuple(params)) as cursor:
            names = [column[0] for column in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in await cursor.fetchall()]


class SqliteDatabase:
    """Shares the checkpoint saver's connection and lock (a second connection meets "database is locked")."""

    dialect: Dialect = "sqlite"

    def __init__(self, connection: Any, lock: asyncio.Lock) -> None:
        self._db = connection
        self._lock = lock
        self._session = _SqliteSession(connection)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self.transaction() as session:
            return await session.execute(sql, params)

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        async with self._lock:
            return await self._session.fetch(sql, params)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Session]:
        async with self._lock:
            if self._db.in_transaction:  # the saver's setup can leave an implicit one open; nothing else runs under the lock
                await self._db.commit()
            # IMMEDIATE takes the write lock up front, so another process cannot slip a row in
            # between this transaction's read and its write (the audit chain depends on it).
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._session
            except BaseException:
                await self._db.rollback()
                raise
            await self._db.commit()


class _PostgresSession:
    def __init__(self, connection: Any) -> None:
        self._conn = connection

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = await self._conn.execute(sql, tuple(params) or None)
        return max(cursor.rowcount, 0)

    async def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        async with self._conn.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                await copy.write_row(row)

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cursor = await self._conn.execute(sql, tuple(params) or None)
        return [dict(row) for row in await cursor.fetchall()]


class PostgresDatabase:
    """Over the saver's pool (autocommit connections with dict rows)."""

    dialect: Dialect = "postgres"

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self._pool.connection() as conn:
            return await _PostgresSession(conn).execute(sql, params)

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            return await _PostgresSession(conn).fetch(sql, params)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Session]:
        async with self._pool.connection() as conn, conn.transaction():
            yield _PostgresSession(conn)


class MemoryDatabase:
    """An in-process SQLite database for runs without a configured one (Studio, node tests).

    Same SQL as the file database; nothing outlives the process. The calls are
    synchronous inside async methods: an in-memory statement takes microseconds.
    """

    dialect: Dialect = "sqlite"

    def __init__(self) -> None:
        import sqlite3

        self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)

    def execute_now(self, statements: Sequence[str]) -> None:
        """Schema set-up from synchronous code (service construction happens outside the loop)."""
        for statement in statements:
            self._db.execute(statement)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._db.execute(sql.replace("%s", "?"), tuple(params)).rowcount

    async def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self._db.executemany(_insert_sql(table, columns), [tuple(row) for row in rows])

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cursor = self._db.execute(sql.replace("%s", "?"), tuple(params))
        names = [column[0] for column in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Session]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
