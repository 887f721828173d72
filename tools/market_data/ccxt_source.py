"""Live candles and market metadata from any exchange ccxt supports (async API).

Only spot markets are loaded: the graph trades spot, and skipping the futures/options
catalogues saves requests and keeps ``BTC/USDT`` unambiguous. Every exchange call goes
through :func:`tools.retry.call_with_retries`; whatever still fails becomes a
:class:`MarketDataError` (or :class:`UnknownSymbol`), so a run holds instead of guessing.
"""

from __future__ import annotations

import asyncio
import difflib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ccxt.async_support as ccxt_async
import numpy as np
import pandas as pd
from ccxt.base.decimal_to_precision import DECIMAL_PLACES, TICK_SIZE

from tools.market_data.base import OHLCV_COLUMNS, MarketDataError, MarketInfo, UnknownSymbol, empty_candles
from tools.retry import call_with_retries, transient
from tools.timeframes import as_utc, last_closed_open_time, period

T = TypeVar("T")

# Candles per request when the caller does not choose: the exchange's documented maximum
# where we know it, else ccxt's feature table, else a size every exchange accepts.
_PAGE_DEFAULTS: dict[str, int] = {"binance": 1000}
_FALLBACK_PAGE = 100


def _ms(moment: datetime) -> int:
    return int(as_utc(moment).timestamp() * 1000)


def redirect_urls(urls: Any, base: str) -> Any:
    """Point every API URL at ``base``, keeping its path so the target can tell them apart."""
    if isinstance(urls, dict):
        return {key: redirect_urls(value, base) for key, value in urls.items()}
    if isinstance(urls, str) and "://" in urls:
        return base + urlsplit(urls).path.rstrip("/")
    return urls


def spot_only(options: dict[str, Any]) -> None:
    """Ask ccxt for spot markets only, where the exchange lets us choose.

    Exchanges expose the choice as ``options["fetchMarkets"]``: either ``{"types": [...]}``
    (binance, bybit, okx, ...) or, in older code paths, a bare list of types.
    """
    choice = options.get("fetchMarkets")
    if isinstance(choice, dict) and "spot" in (choice.get("types") or []):
        options["fetchMarkets"] = {**choice, "types": ["spot"]}
    elif isinstance(choice, list) and "spot" in choice:
        options["fetchMarkets"] = ["spot"]


class CcxtSource:
    """A :class:`~tools.market_data.base.MarketDataSource` backed by one ccxt exchange."""

    def __init__(
        self,
        exchange_id: str,
        *,
        api_url: str | None = None,
        max_attempts: int = 5,
        base_delay: float = 0.5,
        max_delay: float = 8.0,
        page_limit: int | None = None,
    ) -> None:
        if exchange_id not in ccxt_async.exchanges:
            close = difflib.get_close_matches(exchange_id, ccxt_async.exchanges, n=5, cutoff=0.6)
            hint = f"; close matches: {', '.join(close)}" if close else "; see ccxt.exchanges for the list"
            raise ValueError(f"unknown ccxt exchange {exchange_id!r}{hint}")
        if max_attempts < 1 or (page_limit is not None and page_limit < 1):
            raise ValueError("max_attempts and page_limit must be positive")
        self.name = "ccxt:" + exchange_id
        self.exchange_id = exchange_id
        self.max_attempts, self.base_delay, self.max_delay = max_attempts, base_delay, max_delay
        # Public: tests and callers may tune ccxt settings (e.g. ``timeout``) after construction.
        self.exchange: ccxt_async.Exchange = getattr(ccxt_async, exchange_id)({"enableRateLimit": True})
        options = self.exchange.options
        spot_only(options)
        # binance: currencies (sapi capital/config) and margin pairs need API keys; candles
        # and market limits need neither, so never ask.
        options["fetchCurrencies"] = False
        options["fetchMargins"] = False
        self.exchange.has["fetchCurrencies"] = False
        if api_url is not None:
            self.exchange.urls["api"] = redirect_urls(self.exchange.urls["api"], api_url.rstrip("/"))
        features = (self.exchange.features or {}).get("spot") or {}
        feature_limit = (features.get("fetchOHLCV") or {}).get("limit")
        self.page_limit = page_limit or _PAGE_DEFAULTS.get(exchange_id) or feature_limit or _FALLBACK_PAGE
        self._markets: asyncio.Future[dict[str, Any]] | None = None

    # --- plumbing ------------------------------------------------------------------
    async def _call(self, what: str, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """One exchange call with retries; failures become MarketDataError naming exchange and call."""
        try:
            return await call_with_retries(
                fn, *args, attempts=self.max_attempts, base_delay=self.base_delay, max_delay=self.max_delay, **kwargs
            )
        except ccxt_async.BadSymbol as error:
            symbol = args[0] if args and isinstance(args[0], str) else "?"
            raise UnknownSymbol(f"{symbol} is not a market on {self.exchange_id}: {what} said {error}") from error
        except ccxt_async.BaseError as error:
            # transient() still true here means every attempt was used up
            tries = f"after {self.max_attempts} attempts" if transient(error) else "(not retryable)"
            raise MarketDataError(f"{self.name}: {what} failed {tries}: {type(error).__name__}: {error}") from error

    async def _load_markets(self) -> dict[str, Any]:
        """The exchange's (spot) markets, loaded once; concurrent callers share the request."""
        if self._markets is None:
            self._markets = asyncio.ensure_future(self._call("load_markets", self.exchange.load_markets))
        task = self._markets
        try:
            # shield: one caller being cancelled must not cancel the load the others await
            return await asyncio.shield(task)
        except Exception:
            if self._markets is task:
                self._markets = None  # a failed load is not cached; the next caller tries again
            raise

    async def _market(self, symbol: str) -> dict[str, Any]:
        markets = await self._load_markets()
        market = markets.get(symbol)
        if market is None:
            close = difflib.get_close_matches(symbol.upper(), list(markets), n=5, cutoff=0.6)
            hint = f"close matches: {', '.join(close)}" if close else "no close matches"
            raise UnknownSymbol(f"{symbol} is not a market on {self.exchange_id}; {hint}")
        return market

    def _check_timeframe(self, timeframe: str) -> None:
        period(timeframe)  # raises UnknownTimeframe for what tools.timeframes does not know
        offered = self.exchange.timeframes or {}
        if timeframe not in offered:
            raise MarketDataError(f"{self.name} has no {timeframe} candles; it offers {', '.join(offered)}")

    # --- MarketDataSource ----------------------------------------------------------
    async def fetch_since(
        self, symbol: str, timeframe: str, *, since: datetime, until: datetime, on_page: Callable[[int], None] | None = None
    ) -> pd.DataFrame:
        """`on_page(n)` is told how many new candles each page brought (long downloads show progress)."""
        self._check_timeframe(timeframe)
        await self._market(symbol)  # validate before any candle request
        step = int(period(timeframe).total_seconds() * 1000)
        start = _ms(since)
        # newest candle closed at `until`; never later than the wall clock allows, so an
        # `until` in the future cannot admit the exchange's still-forming candle
        clock = datetime.fromtimestamp(self.exchange.milliseconds() / 1000, tz=UTC)
        last_open = _ms(last_closed_open_time(min(as_utc(until), clock), timeframe))
        rows: dict[int, list[Any]] = {}
        cursor = start
        while cursor <= last_open:
            page = await self._call(
                f"fetch_ohlcv({symbol}, {timeframe}, since={cursor})",
                self.exchange.fetch_ohlcv,
                symbol,
                timeframe,
                since=cursor,
                limit=self.page_limit,
            )
            # pages may overlap (exchanges round `since` differently): keep each open time once
            fresh = [row for row in page if row[0] >= cursor and row[0] not in rows]
            if not fresh:
                break  # the exchange has nothing newer: listing gap or end of its history
            kept = [row for row in fresh if start <= row[0] <= last_open]  # drops the still-forming candle
            rows.update((row[0], row) for row in kept)
            if on_page is not None:
                on_page(len(kept))
            cursor = max(row[0] for row in fresh) + step
        return self._frame([rows[t] for t in sorted(rows)])

    async def fetch_candles(self, symbol: str, timeframe: str, *, until: datetime, limit: int = 300) -> pd.DataFrame:
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        since = last_closed_open_time(until, timeframe) - (limit - 1) * period(timeframe)
        frame = await self.fetch_since(symbol, timeframe, since=since, until=until)
        return frame.tail(limit)

    async def market_info(self, symbol: str) -> MarketInfo:
        market = await self._market(symbol)
        volume: float | None = None
        if self.exchange.has.get("fetchTicker"):
            ticker = await self._call(f"fetch_ticker({symbol})", self.exchange.fetch_ticker, symbol)
            volume = _number(ticker.get("quoteVolume"))
        limits = market.get("limits") or {}
        precision = market.get("precision") or {}
        return MarketInfo(
            symbol=symbol,
            base=market["base"],
            quote=market["quote"],
            type=market.get("type") or "spot",
            # ccxt says None when the exchange publishes no status; the market is listed, so
            # only an explicit False marks it inactive
            active=market.get("active") is not False,
            quote_volume_24h=volume,
            amount_min=_number((limits.get("amount") or {}).get("min")),
            cost_min=_number((limits.get("cost") or {}).get("min")),
            amount_precision=self._step(precision.get("amount")),
            price_precision=self._step(precision.get("price")),
        )

    async def markets(self) -> list[MarketInfo]:
        """Spot markets as listed, with the 24h quote volume of one fetch_tickers call where supported."""
        markets = await self._load_markets()
        tickers: dict[str, Any] = {}
        if self.exchange.has.get("fetchTickers"):
            tickers = await self._call("fetch_tickers", self.exchange.fetch_tickers)
        return [
            MarketInfo(
                symbol=symbol,
                base=market["base"],
                quote=market["quote"],
                type=market.get("type") or "spot",
                active=market.get("active") is not False,
                quote_volume_24h=_number((tickers.get(symbol) or {}).get("quoteVolume")),
            )
            for symbol, market in markets.items()
            if (market.get("type") or "spot") == "spot"
        ]

    async def close(self) -> None:
        if self._markets is not None and not self._markets.done():
            self._markets.cancel()
        await self.exchange.close()

    async def __aenter__(self) -> CcxtSource:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- conversions ---------------------------------------------------------------
    def _step(self, value: Any) -> float | None:
        """A precision as a step size, whatever ccxt's precision mode for this exchange."""
        number = _number(value)
        if number is None:
            return None
        if self.exchange.precisionMode == TICK_SIZE:
            return number
        if self.exchange.precisionMode == DECIMAL_PLACES:
            return 10.0 ** -number
        return None  # significant digits have no fixed step

    @staticmethod
    def _frame(rows: list[list[Any]]) -> pd.DataFrame:
        if not rows:
            return empty_candles()
        data = np.array([[np.nan if v is None else v for v in row[1:6]] for row in rows], dtype=np.float64)
        index = pd.DatetimeIndex(pd.to_datetime([row[0] for row in rows], unit="ms", utc=True), name="time")
        return pd.DataFrame(data, index=index.as_unit("ns"), columns=OHLCV_COLUMNS)


def _number(value: Any) -> float | None:
    return None if value is None else float(value)
