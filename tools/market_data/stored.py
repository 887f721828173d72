"""A source backed by the candle store: fetch only what the store lacks, then read from the store.

Reading from the store by the run's clock is what makes replays exact: a
replay at an old `as_of` reads the candles that existed then, whatever
arrived since.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from tools.candle_store import CandleStore
from tools.market_data.base import MarketDataSource, MarketInfo
from tools.quality import normalize
from tools.timeframes import last_closed_open_time, period


def missing_ranges(
    bounds: tuple[datetime, datetime] | None, first_needed: datetime, until: datetime, timeframe: str
) -> list[tuple[datetime, datetime]]:
    """(since, until) windows the store lacks for candles from `first_needed` up to those closed at `until`."""
    step = period(timeframe)
    if bounds is None:
        return [(first_needed, until)]
    oldest, newest = bounds
    ranges = []
    if first_needed < oldest:
        ranges.append((first_needed, oldest))
    if newest + 2 * step <= until:  # a candle newer than the stored ones has closed
        ranges.append((newest + step, until))
    return ranges


class StoredSource:
    def __init__(self, source: MarketDataSource, store: CandleStore, exchange: str) -> None:
        self.inner = source
        self.name = source.name
        self._store = store
        self._exchange = exchange
        # Older history asked for once and not found stays not found: do not ask every run.
        self._backfilled: set[tuple[str, str, datetime]] = set()

    async def sync(self, symbol: str, timeframe: str, *, until: datetime, limit: int) -> list[str]:
        """Fetch the candles the store lacks for this window; the repairs made on the way in."""
        first_needed = last_closed_open_time(until, timeframe) - (limit - 1) * period(timeframe)
        bounds = await self._store.bounds(self._exchange, symbol, timeframe)
        ranges = missing_ranges(bounds, first_needed, until, timeframe)
        if bounds is not None and ranges and ranges[0][0] == first_needed:
            if (symbol, timeframe, first_needed) in self._backfilled:
                ranges = ranges[1:]
            self._backfilled.add((symbol, timeframe, first_needed))
        repairs: list[str] = []
        for since, end in ranges:
            fetched = await self.inner.fetch_since(symbol, timeframe, since=since, until=end)
            cleaned, notes = normalize(fetched)
            repairs += notes
            await self._store.insert(self._exchange, symbol, timeframe, cleaned)
        return repairs

    async def fetch_candles(self, symbol: str, timeframe: str, *, until: datetime, limit: int = 300) -> pd.DataFrame:
        repairs = await self.sync(symbol, timeframe, until=until, limit=limit)
        frame = await self._store.read(self._exchange, symbol, timeframe, until=until, limit=limit)
        frame.attrs["repairs"] = repairs
        return frame

    async def fetch_since(self, symbol: str, timeframe: str, *, since: datetime, until: datetime) -> pd.DataFrame:
        return await self.inner.fetch_since(symbol, timeframe, since=since, until=until)

    async def market_info(self, symbol: str) -> MarketInfo | None:
        return await self.inner.market_info(symbol)

    async def markets(self) -> list[MarketInfo]:
        return await self.inner.markets()

    async def close(self) -> None:
        await self.inner.close()
