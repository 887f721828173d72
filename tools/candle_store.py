"""Candles persisted in the run's database, keyed by (exchange, symbol, timeframe, open time).

Stored candles are immutable: a closed candle never changes, so an insert
that meets an existing key keeps the stored row. Reads are by the run's clock
(`until`), so a replay sees exactly the candles the original run saw even
after newer ones arrived.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Protocol

import pandas as pd

from tools.market_data.base import OHLCV_COLUMNS
from tools.timeframes import as_utc, period

TABLE = "aitrader_candles"
_COLUMNS = "exchange, symbol, timeframe, open_time, open, high, low, close, volume"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    exchange TEXT NOT NULL,
    symbol TEXT NOT NULL,
    timeframe TEXT NOT NULL,
    open_time BIGINT NOT NULL,
    open DOUBLE PRECISION, high DOUBLE PRECISION, low DOUBLE PRECISION,
    close DOUBLE PRECISION, volume DOUBLE PRECISION,
    PRIMARY KEY (exchange, symbol, timeframe, open_time)
)"""


def _ms(moment: datetime) -> int:
    return int(as_utc(moment).timestamp() * 1000)


def _rows(exchange: str, symbol: str, timeframe: str, candles: pd.DataFrame) -> list[tuple[Any, ...]]:
    times = candles.index.as_unit("ms").asi8.tolist() if len(candles) else []
    values = candles[OHLCV_COLUMNS].to_numpy(dtype=float).tolist()
    return [(exchange, symbol, timeframe, t, *v) for t, v in zip(times, values, strict=True)]


def _frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    ordered = sorted(rows, key=lambda row: row[0])
    index = pd.DatetimeIndex(pd.to_datetime([r[0] for r in ordered], unit="ms", utc=True), name="time").as_unit("ns")
    data = {c: [float("nan") if r[i + 1] is None else float(r[i + 1]) for r in ordered] for i, c in enumerate(OHLCV_COLUMNS)}
    return pd.DataFrame(data, index=index, dtype="float64")


class CandleStore(Protocol):
    async def setup(self) -> None: ...
    async def insert(self, exchange: str, symbol: str, timeframe: str, candles: pd.DataFrame) -> int: ...
    async def bounds(self, exchange: str, symbol: str, timeframe: str) -> tuple[datetime, datetime] | None: ...
    async def read(self, exchange: str, symbol: str, timeframe: str, *, until: datetime, limit: int) -> pd.DataFrame: ...


def _bounds(row: tuple[Any, Any] | None) -> tuple[datetime, datetime] | None:
    if not row or row[0] is None:
        return None
    return datetime.fromtimestamp(row[0] / 1000, UTC), datetime.fromtimestamp(row[1] / 1000, UTC)


def _cutoff(until: datetime, timeframe: str) -> int:
    """Newest open time whose candle has closed at `until`."""
    return _ms(until) - int(period(timeframe).total_seconds() * 1000)


class SqliteCandleStore:
    """Shares the checkpoint saver's connection and lock.

    SQLite has one writer at a time; a second connection in the same process
    meets the saver's open transactions and fails with "database is locked"
    (WAL does not wait when a reader must upgrade to a writer). One connection,
    one lock, and every statement is serialised instead.
    """

    def __init__(self, connection: Any, lock: asyncio.Lock) -> None:
        self._db = connection
        self._lock = lock

    async def setup(self) -> None:
        async with self._lock:
            await self._db.execute(_SCHEMA)
            await self._db.commit()

    async def insert(self, exchange: str, symbol: str, timeframe: str, candles: pd.DataFrame) -> int:
        rows = _rows(exchange, symbol, timeframe, candles)
        async with self._lock:
            before = self._db.total_changes
            await self._db.executemany(
                f"INSERT INTO {TABLE} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", rows
            )
            await self._db.commit()
            return self._db.total_changes - before

    async def bounds(self, exchange: str, symbol: str, timeframe: str) -> tuple[datetime, datetime] | None:
        async with self._lock, self._db.execute(
            f"SELECT min(open_time), max(open_time) FROM {TABLE} WHERE exchange = ? AND symbol = ? AND timeframe = ?",
            (exchange, symbol, timeframe),
        ) as cursor:
            return _bounds(await cursor.fetchone())

    async def read(self, exchange: str, symbol: str, timeframe: str, *, until: datetime, limit: int) -> pd.DataFrame:
        async with self._lock, self._db.execute(
            f"SELECT open_time, open, high, low, close, volume FROM {TABLE} "
            "WHERE exchange = ? AND symbol = ? AND timeframe = ? AND open_time <= ? ORDER BY open_time DESC LIMIT ?",
            (exchange, symbol, timeframe, _cutoff(until, timeframe), limit),
        ) as cursor:
            return _frame(list(await cursor.fetchall()))


class PostgresCandleStore:
    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def setup(self) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(_SCHEMA)

    async def insert(self, exchange: str, symbol: str, timeframe: str, candles: pd.DataFrame) -> int:
        rows = _rows(exchange, symbol, timeframe, candles)
        if not rows:
            return 0
        async with self._pool.connection() as conn, conn.cursor() as cursor:
            await cursor.executemany(
                f"INSERT INTO {TABLE} ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                rows,
            )
            return max(cursor.rowcount, 0)

    async def bounds(self, exchange: str, symbol: str, timeframe: str) -> tuple[datetime, datetime] | None:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                f"SELECT min(open_time) AS lo, max(open_time) AS hi FROM {TABLE} "
                "WHERE exchange = %s AND symbol = %s AND timeframe = %s",
                (exchange, symbol, timeframe),
            )
            row = await cursor.fetchone()
        return _bounds((row["lo"], row["hi"]) if row else None)

    async def read(self, exchange: str, symbol: str, timeframe: str, *, until: datetime, limit: int) -> pd.DataFrame:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                f"SELECT open_time, open, high, low, close, volume FROM {TABLE} "
                "WHERE exchange = %s AND symbol = %s AND timeframe = %s AND open_time <= %s ORDER BY open_time DESC LIMIT %s",
                (exchange, symbol, timeframe, _cutoff(until, timeframe), limit),
            )
            rows = await cursor.fetchall()
        return _frame([tuple(r.values()) for r in rows])
