"""Deterministic, offline OHLCV for any symbol string.

Natural markets (``scenario=None``): weekly candles from a fixed genesis (2000-01-03,
a Monday) are the root; a seeded Markov chain of regimes (up, down, range, volatile)
drives their log-returns, with a slow pull to a per-symbol price level
(:mod:`tools.market_data.natural`). Every other timeframe is refined from it top-down
(:mod:`tools.market_data.market`, :mod:`tools.market_data.synthetic`), so children
aggregate back to their parents exactly and history never changes as the clock moves.

Named scenarios anchor to ``until``: the 26 weeks before the last 2-3 weeks get the
scenario's weekly regime, and those last weeks (the "tail", starting on a Monday so
no candle straddles it) are drawn bottom-up at 5m and aggregated, which controls the
shape every indicator sees at ``until``. A tail whose 15m/1h/4h indicators (pandas-ta,
as the strategies compute them) miss the scenario's promise (with a margin) is redrawn,
up to 8 times (:mod:`tools.market_data.scenarios`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from tools.market_data.base import MarketInfo, empty_candles
from tools.market_data.market import Market, floor, step
from tools.market_data.natural import NaturalMarket, profile
from tools.market_data.scenarios import OVERRIDE_WEEKS, TAIL_WEEKS, draw_tail, keeps_promise, override_root
from tools.market_data.synthetic import GEN_S, GENESIS, M5, WEEK, Bars, concat, digest, remember
from tools.timeframes import as_utc, floor_time, last_closed_open_time, period

SCENARIOS: tuple[str, ...] = ("uptrend", "downtrend", "range", "volatile", "crash")
SUPPORTED: tuple[str, ...] = ("1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w")
COLUMNS: list[str] = ["open", "high", "low", "close", "volume"]

_ATTEMPTS = 8  # redraws of a scenario tail that misses its promise


# A universe to scan: the majors by name, then numbered synthetic coins. Quoted in USDT and, for the
# majors, USDC too (a scanner filters by quote). Its 24h volume is the symbol's own turnover level.
MAJORS: tuple[str, ...] = (
    "BTC", "ETH", "BNB", "SOL", "XRP", "ADA", "DOGE", "AVAX", "DOT", "LINK", "TRX", "MATIC", "LTC", "ATOM",
    "UNI", "XLM", "NEAR", "APT", "ARB", "OP", "FIL", "INJ", "AAVE", "SUI", "ETC", "HBAR", "ICP", "RNDR",
)
UNIVERSE_SIZE = 3_000


def builtin_markets(size: int = UNIVERSE_SIZE) -> list[MarketInfo]:
    bases = list(MAJORS) + [f"SYN{i:04d}" for i in range(1, size - len(MAJORS) + 1)]
    listed = [(base, "USDT") for base in bases] + [(base, "USDC") for base in MAJORS]
    return [
        MarketInfo(
            symbol=f"{base}/{quote}",
            base=base,
            quote=quote,
            type="spot",
            active=True,
            quote_volume_24h=profile(f"{base}/{quote}").turnover / 7 * (0.2 if quote == "USDC" else 1.0),
        )
        for base, quote in listed
    ]


# --- markets, cached: natural ones per symbol, scenarios per (symbol, scenario, minute) ---
# A natural market keeps its refined blocks (~190 KB): its next 5m candle then costs ~0.6 ms instead of
# ~23 ms rebuilt from the weekly root. Enough for a worker's share of a 1,000-symbol scan's next cycle.
NATURAL_MARKETS_KEPT = 600
_NATURAL: OrderedDict[str, Market] = OrderedDict()
_SCENARIO: OrderedDict[tuple[str, str, int], Market] = OrderedDict()


def _natural(symbol: str, weeks: int) -> Market:
    market = _NATURAL.get(symbol)
    if market is None or len(market.root.t) < weeks:
        # whole years at a time (the series is a pure function of the week index): rarely
        # rebuilt, and a scan, building each symbol's once, computes little past its clock
        prof = profile(symbol)
        market = NaturalMarket(prof, -(-weeks // 52) * 52)
    return remember(_NATURAL, symbol, market, NATURAL_MARKETS_KEPT)


def _market(symbol: str, scenario: str | None, until: int) -> Market:
    week = floor(until, "1w")
    if scenario is None:
        return _natural(symbol, (week - GEN_S) // WEEK + 1)
    key = (symbol, scenario, until)
    if key in _SCENARIO:
        return remember(_SCENARIO, key, _SCENARIO[key], 32)
    t0 = week - TAIL_WEEKS * WEEK
    weeks = (t0 - GEN_S) // WEEK
    if weeks <= OVERRIDE_WEEKS:
        raise ValueError(f"scenario data needs until after {GENESIS.date()} + {OVERRIDE_WEEKS + 3} weeks")
    nat = _natural(symbol, weeks)
    root, center = override_root(nat.prof, nat.window("1w", GEN_S, t0 - WEEK), scenario, digest(key))
    for attempt in range(_ATTEMPTS):
        seed = digest(key, attempt)
        tail = draw_tail(nat.prof, scenario, seed, t0, until, float(root.c[-1]), math.exp(center))
        if keeps_promise(scenario, tail, until):
            break
    return remember(_SCENARIO, key, Market(nat.prof, root, tail), 32)


def _continued(symbol: str, scenario: str | None, anchor: datetime, timeframe: str, first: int, last: int) -> Bars:
    """The scenario market up to its anchor, then the natural market scaled to the anchor's close."""
    p, at = step(timeframe), int(floor_time(anchor, "1m").timestamp())
    scenario_market = _market(symbol, scenario, at)
    cut = int(last_closed_open_time(anchor, timeframe).timestamp())
    parts = [scenario_market.window(timeframe, first, min(last, cut))] if first <= cut else []
    if last > cut:
        m5 = int(last_closed_open_time(anchor, "5m").timestamp())
        ratio = float(scenario_market.window("5m", m5, m5).c[0]) / float(_market(symbol, None, m5 + M5).window("5m", m5, m5).c[0])
        natural = _market(symbol, None, last + p).window(timeframe, max(first, cut + p), last)
        parts.append(Bars(natural.t, natural.o * ratio, natural.h * ratio, natural.l * ratio, natural.c * ratio, natural.v))
    return concat(parts)


# --- frames: a scan asks every symbol for the same windows, so their indexes are shared --
_COLUMN_INDEX = pd.Index(COLUMNS)
_INDEXES: OrderedDict[bytes, pd.DatetimeIndex] = OrderedDict()


def _time_index(t: np.ndarray) -> pd.DatetimeIndex:
    """Open times as an index: built once per window, handed out as views (each with its own name)."""
    key = t.tobytes() if len(t) <= 5_000 else None  # a backtest's long window is not worth keeping
    index = _INDEXES.get(key) if key else None
    if index is None:
        index = pd.DatetimeIndex((t * 1_000_000_000).view("datetime64[ns]"), tz=UTC, name="time")
    return remember(_INDEXES, key, index, 32).view() if key else index


def _frame(bars: Bars) -> pd.DataFrame:
    """One (5, n) block, as pandas would consolidate the columns, handed over without a copy (a dict
    of columns costs ~4x as much); the indexes are views (a third of a copy's cost, the same data), so
    renaming one frame's leaves the rest."""
    values = np.array(bars[1:], dtype=np.float64)  # (5, n) in one copy: cheaper than np.stack
    return pd.DataFrame(values.T, index=_time_index(bars.t), columns=_COLUMN_INDEX.view(), copy=False)


class BuiltinSource:
    """Offline market data: any symbol, natural or a named scenario (see module docstring)."""

    name: str = "builtin"

    def __init__(self, scenario: str | None = None, anchor: datetime | None = None) -> None:
        if scenario is not None and scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)} or None")
        self.scenario = scenario
        # A scenario describes the market at one clock. With an anchor the market is that one scenario,
        # and after the anchor it goes on as the natural market scaled to join it: what followed a
        # decision, for monitoring a position opened on a scenario market.
        self.anchor = as_utc(anchor) if anchor is not None and scenario is not None else None

    def candles(self, symbol: str, timeframe: str, *, until: datetime, limit: int = 300) -> pd.DataFrame:
        if timeframe not in SUPPORTED:
            raise ValueError(f"builtin source supports timeframes {', '.join(SUPPORTED)}; got {timeframe!r}")
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        until = as_utc(until)
        p = step(timeframe)
        last = int(last_closed_open_time(until, timeframe).timestamp())
        first = last - (limit - 1) * p
        if first < GEN_S:
            raise ValueError(f"builtin history starts {GENESIS.date()}: {limit} x {timeframe} to {until} is earlier")
        # scenarios anchor to the minute, so seconds of jitter in `until` change nothing
        anchor = int(floor_time(self.anchor or until, "1m").timestamp())
        if self.anchor is not None and until > self.anchor:
            bars = _continued(symbol, self.scenario, self.anchor, timeframe, first, last)
        else:
            bars = _market(symbol, self.scenario, anchor).window(timeframe, first, last)
        return _frame(bars)

    async def fetch_candles(self, symbol: str, timeframe: str, *, until: datetime, limit: int = 300) -> pd.DataFrame:
        return self.candles(symbol, timeframe, until=until, limit=limit)

    async def fetch_since(self, symbol: str, timeframe: str, *, since: datetime, until: datetime) -> pd.DataFrame:
        last = last_closed_open_time(until, timeframe)
        count = (last - floor_time(since, timeframe)) // period(timeframe) + 1
        if count < 1:
            return empty_candles()
        frame = self.candles(symbol, timeframe, until=until, limit=count)
        return frame[frame.index >= pd.Timestamp(as_utc(since))]

    async def market_info(self, symbol: str) -> MarketInfo | None:
        return None  # synthetic markets have no exchange metadata

    async def markets(self) -> list[MarketInfo]:
        return builtin_markets()

    async def close(self) -> None:
        return None
