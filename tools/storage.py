"""The run's database: LangGraph checkpoints and the candle store, side by side.

PostgreSQL when a URL is configured, else an embedded SQLite file in the data
directory. Both hold the same things, so a user can start embedded and move
to Postgres without the product changing behaviour.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.store.base import BaseStore

from state import Settings, serializable_models
from tools.checkpoint_serde import SectionSerializer
from tools.audit_log import AuditLog
from tools.candle_store import CandleStore, PostgresCandleStore, SqliteCandleStore
from tools.database import Database, PostgresDatabase, SqliteDatabase
from tools.ledger import Ledger


class StorageUnavailable(RuntimeError):
    """The configured database cannot be opened."""


@dataclass(frozen=True)
class Storage:
    checkpointer: BaseCheckpointSaver
    candles: CandleStore
    # LangGraph's long-term memory across threads (e.g. a symbol's regime at its previous run).
    store: BaseStore
    # Positions, governor flags and the append-only audit table, in the same database.
    ledger: Ledger
    audit: AuditLog
    # The saver's own database, for reading its checkpoint ids without loading a checkpoint.
    database: Database | None = None

    async def last_checkpoint_id(self, thread_id: str) -> str | None:
        """A thread's newest checkpoint id: one index lookup, where the saver would also load and
        deserialise the whole state. Both savers keep ids in `checkpoints` and order them the same way."""
        if self.database is None:
            config = {"configurable": {"thread_id": thread_id}}
            found = await self.checkpointer.aget_tuple(config)
            return found.config["configurable"]["checkpoint_id"] if found else None
        rows = await self.database.fetch(
            "SELECT checkpoint_id FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = '' ORDER BY checkpoint_id DESC LIMIT 1",
            (thread_id,),
        )
        return str(rows[0]["checkpoint_id"]) if rows else None


async def _open_books(db: Database) -> tuple[Ledger, AuditLog]:
    ledger, audit = Ledger(db), AuditLog(db)
    await ledger.setup()
    await audit.setup()
    return ledger, audit


def checkpoint_serializer() -> SectionSerializer:
    # An explicit allowlist: checkpoints revive only our own section models.
    return SectionSerializer(serializable_models())


@asynccontextmanager
async def open_storage(settings: Settings) -> AsyncIterator[Storage]:
    opener = _postgres(settings.database_url) if settings.database_url else _sqlite(settings)
    async with opener as storage:
        yield storage


@asynccontextmanager
async def _sqlite(settings: Settings) -> AsyncIterator[Storage]:
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.store.sqlite.aio import AsyncSqliteStore

    path = settings.sqlite_path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = await aiosqlite.connect(path)
        # WAL lets another process (the API, `aitrader history`) read while a run writes.
        await connection.execute("PRAGMA journal_mode=WAL")
        await connection.execute("PRAGMA busy_timeout=10000")
    except (OSError, aiosqlite.Error) as error:
        raise StorageUnavailable(f"cannot open the SQLite database {path}: {error}") from error
    try:
        saver = AsyncSqliteSaver(connection, serde=checkpoint_serializer())
        await saver.setup()
        candles = SqliteCandleStore(connection, saver.lock)
        await candles.setup()
        store = AsyncSqliteStore(connection)
        store.lock = saver.lock  # one connection, one lock: statements never interleave transactions
        await store.setup()
        # Setup can leave an implicit transaction open; the store's own BEGIN would then fail.
        await connection.commit()
        database = SqliteDatabase(connection, saver.lock)
        ledger, audit = await _open_books(database)
        yield Storage(checkpointer=saver, candles=candles, store=store, ledger=ledger, audit=audit, database=database)
    finally:
        await connection.close()


@asynccontextmanager
async def _postgres(url: str) -> AsyncIterator[Storage]:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from langgraph.store.postgres.aio import AsyncPostgresStore
    from psycopg import AsyncConnection, OperationalError
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool, PoolTimeout

    try:
        # A plain connection first: the pool would retry a refused server until its timeout.
        probe = await AsyncConnection.connect(url, connect_timeout=5)
        await probe.close()
    except OperationalError as error:
        raise StorageUnavailable(f"cannot reach PostgreSQL at {_redact(url)}: {error}") from error
    pool = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=4,
        open=False,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        configure=_fast_compression,
    )
    try:
        await pool.open(wait=True, timeout=10)
    except (OperationalError, PoolTimeout) as error:
        await pool.close()
        raise StorageUnavailable(f"cannot reach PostgreSQL at {_redact(url)}: {error}") from error
    try:
        saver = AsyncPostgresSaver(pool, serde=checkpoint_serializer())
        await saver.setup()
        candles = PostgresCandleStore(pool)
        await candles.setup()
        store = AsyncPostgresStore(pool)
        await store.setup()
        database = PostgresDatabase(pool)
        ledger, audit = await _open_books(database)
        yield Storage(checkpointer=saver, candles=candles, store=store, ledger=ledger, audit=audit, database=database)
    finally:
        await pool.close()


async def _fast_compression(connection: Any) -> None:
    """Checkpoint blobs and audit payloads are tens of KB a decision, all TOAST-compressed as they are written:
    with lz4 instead of the default pglz the server spends ~2 ms less CPU a decision here, for about the same size.
    A server built without lz4 keeps pglz."""
    from psycopg import Error

    try:
        await connection.execute("SET default_toast_compression = 'lz4'")
    except Error:
        pass


def _redact(url: str) -> str:
    """The URL without its password, for error messages."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else f"{scheme}://{user}@{host}"
