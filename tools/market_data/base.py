"""The one interface every market-data source implements, and what they share."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import pandas as pd
from pydantic import BaseModel, ConfigDict

OHLCV_COLUMNS = ["open", "high", "low", "close", "volume"]


class MarketDataError(RuntimeError):
    """A source could not deliver candles; the run holds rather than guesses."""


class UnknownSymbol(MarketDataError):
    """The exchange (or data directory) has no such market; the message lists close matches."""


class MarketInfo(BaseModel):
    """Exchange metadata for one market. Offline sources have none."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    base: str
    quote: str
    type: str  # "spot", "swap", "future", "option", ...
    active: bool
    quote_volume_24h: float | None = None
    amount_min: float | None = None
    cost_min: float | None = None
    amount_precision: float | None = None
    price_precision: float | None = None


class MarketDataSource(Protocol):
    name: str

    async def fetch_candles(self, symbol: str, timeframe: str, *, until: datetime, limit: int = 300) -> pd.DataFrame:
        """The newest `limit` candles closed at `until`: OHLCV float columns, UTC open-time index named "time"."""
        ...

    async def fetch_since(self, symbol: str, timeframe: str, *, since: datetime, until: datetime) -> pd.DataFrame:
        """Every candle with open time >= `since` that has closed at `until`, same frame shape."""
        ...

    async def market_info(self, symbol: str) -> MarketInfo | None:
        """Exchange metadata, or None when the source has none (files, built-in)."""
        ...

    async def markets(self) -> list[MarketInfo]:
        """Every market the source lists, with 24h quote volume where it knows it (a scanner's universe)."""
        ...

    async def close(self) -> None: ...


def empty_candles() -> pd.DataFrame:
    index = pd.DatetimeIndex([], dtype="datetime64[ns, UTC]", name="time")
    return pd.DataFrame({c: pd.Series(dtype="float64") for c in OHLCV_COLUMNS}, index=index)
