"""The checkpointer a run uses: Postgres when a URL is configured, else an embedded SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from state import Settings, serializable_models


class CheckpointStoreUnavailable(RuntimeError):
    """The configured checkpoint database cannot be opened."""


def checkpoint_serializer() -> JsonPlusSerializer:
    # An explicit allowlist: checkpoints revive only our own section models.
    return JsonPlusSerializer(allowed_msgpack_modules=serializable_models())


@asynccontextmanager
async def open_checkpointer(settings: Settings) -> AsyncIterator[BaseCheckpointSaver]:
    if settings.database_url:
        async with _postgres(settings.database_url) as saver:
            yield saver
    else:
        async with _sqlite(settings) as saver:
            yield saver


@asynccontextmanager
async def _sqlite(settings: Settings) -> AsyncIterator[BaseCheckpointSaver]:
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    path = settings.sqlite_path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = await aiosqlite.connect(path)
    except (OSError, aiosqlite.Error) as error:
        raise CheckpointStoreUnavailable(f"cannot open the SQLite checkpoint file {path}: {error}") from error
    try:
        # WAL lets a reader (the API, `aitrader history`) look while a run writes.
        await connection.execute("PRAGMA journal_mode=WAL")
        saver = AsyncSqliteSaver(connection, serde=checkpoint_serializer())
        await saver.setup()
        yield saver
    finally:
        await connection.close()


@asynccontextmanager
async def _postgres(url: str) -> AsyncIterator[BaseCheckpointSaver]:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg import OperationalError
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool, PoolTimeout

    pool = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=4,
        open=False,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
    )
    try:
        await pool.open(wait=True, timeout=10)
    except (OperationalError, PoolTimeout) as error:
        await pool.close()
        raise CheckpointStoreUnavailable(f"cannot reach PostgreSQL at {_redact(url)}: {error}") from error
    try:
        saver = AsyncPostgresSaver(pool, serde=checkpoint_serializer())
        await saver.setup()
        yield saver
    finally:
        await pool.close()


def _redact(url: str) -> str:
    """The URL without its password, for error messages."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else f"{scheme}://{user}@{host}"
