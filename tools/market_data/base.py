"""The one interface every market-data source implements."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import pandas as pd

OHLCV_COLUMNS = ["open", "high", "low", "close", "volume"]


class MarketDataError(RuntimeError):
    """A source could not deliver candles; the run holds rather than guesses."""


class MarketDataSource(Protocol):
    name: str

    async def fetch_candles(
        self, symbol: str, timeframe: str, *, until: datetime, limit: int = 300
    ) -> pd.DataFrame:
        """The newest `limit` candles closed at `until`: OHLCV columns, UTC open-time index."""
        ...
