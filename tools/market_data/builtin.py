"""Deterministic, offline OHLCV for any symbol string.

Natural markets (``scenario=None``): weekly candles from a fixed genesis (2000-01-03,
a Monday) are the root; a seeded Markov chain of regimes (up, down, range, volatile)
drives their log-returns, with a slow pull to a per-symbol price level. Every other
timeframe is refined from it top-down (see :mod:`tools.market_data.synthetic`), so
children aggregate back to their parents exactly and history never changes as the
clock moves.

Named scenarios anchor to ``until``: the 26 weeks before the last 2-3 weeks get the
scenario's weekly regime, and those last weeks (the "tail", starting on a Monday so
no candle straddles it) are drawn bottom-up at 5m and aggregated, which controls the
shape every indicator sees at ``until``. A tail whose 15m/1h/4h indicators (pandas-ta,
as the strategies compute them) miss the scenario's promise (with a margin) is redrawn,
up to 8 times.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import OrderedDict
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pandas_ta as ta

from tools.market_data.synthetic import (
    GEN_S,
    GENESIS,
    M5,
    WEEK,
    Bars,
    Market,
    Profile,
    aggregate,
    ar1,
    concat,
    digest,
    floor,
    gauss,
    keys,
    remember,
    step,
    uniform,
)
from tools.market_data.base import MarketInfo, empty_candles
from tools.timeframes import as_utc, floor_time, last_closed_open_time, period

SCENARIOS: tuple[str, ...] = ("uptrend", "downtrend", "range", "volatile", "crash")
SUPPORTED: tuple[str, ...] = ("1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w")
COLUMNS: list[str] = ["open", "high", "low", "close", "volume"]

_OVERRIDE_WEEKS = 26  # long enough for weekly EMA20 / daily EMA50 to agree
_TAIL_WEEKS = 2
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
            quote_volume_24h=_profile(f"{base}/{quote}").turnover / 7 * (0.2 if quote == "USDC" else 1.0),
        )
        for base, quote in listed
    ]


# --- symbol profile and the weekly root -------------------------------------------
def _profile(symbol: str) -> Profile:
    seed = digest("builtin", symbol)
    u = uniform(np.array([seed], dtype=np.uint64), 3)[0]
    base_asset = re.split(r"[/:\-_ ]", symbol.upper())[0]
    base_asset = re.sub(r"(USDT|USDC|BUSD|USD|EUR)$", "", base_asset) or base_asset
    if base_asset in {"BTC", "XBT", "WBTC"}:
        return Profile(seed, 25_000.0 * 2.5 ** u[0], 0.065 + 0.02 * u[1], 4e10)
    if base_asset in {"ETH", "WETH"}:
        return Profile(seed, 1_500.0 * 2.5 ** u[0], 0.08 + 0.02 * u[1], 2e10)
    price = math.exp(math.log(0.01) + u[0] * math.log(500 / 0.01))
    return Profile(seed, price, 0.09 + 0.08 * u[1], 10 ** (6.0 + 3.0 * u[2]))


# Regimes: 0 up, 1 down, 2 range, 3 volatile. (drift in sigmas, vol multiplier)
_REGIME = ((0.3, 0.9), (-0.3, 1.0), (0.0, 0.55), (0.0, 1.9))
_TRANS: list[list[float]] = np.cumsum(
    [[0.90, 0.02, 0.06, 0.02], [0.02, 0.88, 0.07, 0.03], [0.04, 0.04, 0.90, 0.02], [0.06, 0.06, 0.08, 0.80]],
    axis=1,
).tolist()


def _weekly_bars(prof: Profile, t: np.ndarray, prev: float, logc: np.ndarray, mult: np.ndarray) -> Bars:
    """Wicks and volume for weekly closes; open = previous close keeps the path continuous."""
    u = uniform(keys(prof.seed, 1, t), 4)
    c = np.exp(logc)
    o = np.concatenate(([prev], c[:-1]))
    s = prof.sigma * mult
    h = np.maximum(o, c) * np.exp(s * (0.02 + 0.3 * -np.log(u[:, 0])))
    low = np.minimum(o, c) * np.exp(-s * (0.02 + 0.3 * -np.log(u[:, 1])))
    move = np.abs(np.log(c / o)) / s
    v = prof.turnover / c * mult * (0.5 + 0.6 * move) * np.exp(0.25 * gauss(u[:, 2:4])[:, 0])
    return Bars(t, o, h, low, c, v)


def _regime_runs(switch: np.ndarray) -> list[tuple[int, int, int]]:
    """The chain of regimes (each week's draw picks the next from the current), starting in range.

    As (regime, first week, end week) runs: regimes last ~10 weeks, so the walk jumps from one
    change to the next, with the weeks whose draw would leave each regime (and where to) found up front.
    """
    # regime r stays when min(bisect_left(_TRANS[r], draw), 3) == r: a draw in (row[r-1], row[r]]
    bands = [(row[r - 1] if r else -1.0, row[r] if r < 3 else 2.0) for r, row in enumerate(_TRANS)]
    leave = [np.flatnonzero((switch <= lo) | (switch > hi)) for lo, hi in bands]
    dest = [np.minimum(np.searchsorted(row, switch[w]), 3).tolist() for row, w in zip(_TRANS, leave, strict=True)]
    leave_at = [weeks.tolist() for weeks in leave]
    runs, regime, first, draw, n = [], 2, 0, 0, len(switch)
    while True:
        # the regime holds from week `first` up to the first later draw that leaves it
        k = bisect.bisect_left(leave_at[regime], draw)
        end = leave_at[regime][k] if k < len(leave_at[regime]) else n
        if end > first:
            runs.append((regime, first, end))
        if end == n:
            return runs
        regime, first, draw = dest[regime][k], end, end + 1


def _log_closes(base: float, noise: list[float], runs: list[tuple[int, int, int]]) -> list[float]:
    """Weekly log closes: regime drift and noise, plus the pull to the symbol's level.

    Sequential (the pull depends on the price so far), so kept lean: ``max(abs(dev) - 0.8, 0) *
    copysign(1, dev)`` is unrolled into branches giving the same floats (below 0.8, a signed zero).
    """
    lp = level = base
    logc: list[float] = []
    for regime, first, end in runs:
        # a range forms around wherever the price is (at week 0 that is the level already)
        in_range, level = regime == 2, lp if regime == 2 else level
        for step_noise in noise[first:end]:
            dev = lp - base
            # slow pull to the symbol's level (harder beyond ~e^0.8) keeps prices plausible
            if dev > 0.8:
                pull = -0.02 * dev - 0.15 * (dev - 0.8)
            elif dev < -0.8:
                pull = -0.02 * dev + 0.15 * (-dev - 0.8)
            else:
                pull = -0.02 * dev
            if in_range:
                pull -= 0.35 * (lp - level)
            lp += step_noise + pull
            logc.append(lp)
    return logc


def _natural_closes(prof: Profile, weeks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Open times, log closes and volatility multipliers of the weekly root."""
    t = GEN_S + WEEK * np.arange(weeks, dtype=np.int64)
    u = uniform(keys(prof.seed, 0, t), 3)
    runs = _regime_runs(u[:, 2])
    regimes = np.repeat([r for r, _, _ in runs], [end - first for _, first, end in runs])
    drift, mult = (np.array(col)[regimes] for col in zip(*_REGIME, strict=True))
    noise = prof.sigma * (drift + mult * gauss(u[:, :2])[:, 0])
    return t, np.array(_log_closes(math.log(prof.base), noise.tolist(), runs)), mult


def _natural_root(prof: Profile, weeks: int) -> Bars:
    """The whole weekly root at once (a natural market draws it as asked: :class:`_NaturalMarket`)."""
    t, logc, mult = _natural_closes(prof, weeks)
    return _weekly_bars(prof, t, prof.base, logc, mult)


class _NaturalMarket(Market):
    """A natural market whose weekly wicks and volume are drawn for the weeks asked for, latest first.

    Closes run from genesis, but a decision reads the last few hundred weeks only, and the wicks and
    volume of the rest are most of the root's cost. A week's depend on its close, the close before
    and its own draws alone, so drawing a run of weeks gives what drawing them all does.
    """

    def __init__(self, prof: Profile, weeks: int) -> None:
        t, self._logc, self._mult = _natural_closes(prof, weeks)
        super().__init__(prof, Bars(t, *(np.empty(weeks) for _ in range(5))))
        self._drawn = weeks  # weeks from here on are drawn

    def _weeks(self, reach: int, i: int, j: int) -> Bars:
        if i < self._drawn:
            first = min(reach, i)
            before = max(first - 1, 0)  # the week before gives the first one's open
            run = slice(before, self._drawn)
            drawn = _weekly_bars(self.prof, self.root.t[run], self.prof.base, self._logc[run], self._mult[run])
            for whole, part in zip(self.root[1:], drawn[1:], strict=True):
                whole[first : self._drawn] = part[first - before :]
            self._drawn = first
        return super()._weeks(reach, i, j)


def _override_root(prof: Profile, nat: Bars, scenario: str, seed: int) -> tuple[Bars, float]:
    """Replace the weeks before the tail with the scenario's weekly regime."""
    k = len(nat.t) - _OVERRIDE_WEEKS
    start, s = math.log(nat.c[k - 1]), prof.sigma
    t = nat.t[k:]
    z = gauss(uniform(keys(seed, 2, t), 2))[:, 0]
    if scenario in ("uptrend", "downtrend"):
        sign = 1.0 if scenario == "uptrend" else -1.0
        # noise around the trend line, not a random walk: a streak of bad weeks cannot undo it
        logc, mult = start + sign * s * (0.3 * np.arange(1, _OVERRIDE_WEEKS + 1) + ar1(0.3 * z, 0.5)), 0.5
    elif scenario == "range":
        logc, mult = start + 0.25 * s * z, 0.55
    elif scenario == "volatile":
        logc, mult = start + s * ar1(2.0 * z, 0.7), 2.0
    else:  # crash: the market is its natural self until the tail
        return nat, start
    bars = _weekly_bars(prof, t, float(nat.c[k - 1]), logc, np.full(_OVERRIDE_WEEKS, mult))
    return Bars(*(np.concatenate((a[:k], b)) for a, b in zip(nat, bars, strict=True))), start


# --- scenario tails: the last 2-3 weeks drawn at 5m --------------------------------
def _tail(prof: Profile, scenario: str, seed: int, t0: int, until: int, p0: float, center: float) -> Bars:
    """5m candles from ``t0`` up to the one forming at ``until`` (its future half is never served)."""
    n = (until - until % M5 - t0) // M5 + 1
    t = t0 + M5 * np.arange(n, dtype=np.int64)
    age = (until - (t + M5)) / 3600.0  # hours from each close to until
    # the symbol's 5m volatility, scaled to what refined (natural) 5m candles show
    s = 0.6 * prof.sigma / math.sqrt(2016.0)
    u = uniform(keys(seed, 3, t), 8)
    e = gauss(u[:, :6])  # fast noise, slow noise, volume noise
    k = np.arange(1, n + 1)
    fast = ar1(e[:, 0], math.exp(-5 / 20))  # choppy, mean-reverting noise: bounded at every scale
    if scenario in ("uptrend", "downtrend"):
        # steady drift, steeper over the last 36 h; dips below the trend fade near until so
        # the last closes of every timeframe sit on it instead of on a random pullback
        trend = 0.02 * s * k + 0.84 * s * np.maximum(36.0 - np.maximum(age, -1.0), 0.0)
        noise = s * (1.3 * fast + 0.15 * np.cumsum(e[:, 1]))
        noise = np.where(noise < 0, noise * (1.0 - 0.8 * np.exp(-np.maximum(age, 0.0) / 3.0)), noise)
        dev, wick = (1.0 if scenario == "uptrend" else -1.0) * (trend + noise), 0.8 * s
    elif scenario == "range":
        # chop around the range middle; the end is pulled back to it so no edge is left
        mid = math.log(center / p0) * (1.0 - np.exp(-k / 72.0))
        swing = s * (1.6 * fast + 0.6 * ar1(e[:, 1], math.exp(-5 / 240)))
        dev, wick = mid + swing * (1.0 - 0.6 * np.exp(-np.maximum(age, 0.0) / 3.0)), s
    elif scenario == "volatile":
        swing = ar1(e[:, 1] * 4.0, math.exp(-5 / 4320)) + 4.0 * fast
        dev, wick = s * swing, 4.0 * s
    else:  # crash: a normal market, then a cascade over the last 3.5 days
        calm = s * (0.9 * np.cumsum(e[:, 1]) + fast)
        before = int(np.count_nonzero(age > 84.0))
        calm[before:] = calm[before - 1] if before else 0.0
        shape = np.interp(-age, [-84.0, -78.0, -60.0, -12.0, 0.0, 1.0], [0.0, -0.25, -0.18, -0.28, -0.37, -0.375])
        dev = calm + shape + s * 2.5 * fast * (age <= 84.0)
        wick = s * np.where(age > 84.0, 1.0, 2.5)
    c = p0 * np.exp(dev)
    o = np.concatenate(([p0], c[:-1]))
    h = np.maximum(o, c) * np.exp(wick * (0.1 + 0.5 * -np.log(u[:, 6])))
    low = np.minimum(o, c) * np.exp(-wick * (0.1 + 0.5 * -np.log(u[:, 7])))
    hour = (t // 3600) % 24
    season = 1.0 + 0.3 * np.cos(2 * np.pi * (hour - 15) / 24)
    move = np.abs(np.log(c / o)) / s  # in the symbol's usual 5m move: crashes trade heavily
    v = prof.turnover / 2016.0 / c * (0.3 + 0.7 * move) * season * np.exp(0.3 * e[:, 2])
    return Bars(t, o, h, low, c, v)


# --- checking a tail: random draws can still wander off the promised shape ------------
def _indicators(bars: Bars, adx: bool) -> dict[str, float]:
    """The last values of what the scenario promises, computed as the strategies do (pandas-ta).

    ADX only when asked: pandas-ta's ADX is by far the slowest of them, and 15m never needs it.
    """
    high, low, close = pd.Series(bars.h), pd.Series(bars.l), pd.Series(bars.c)
    atr = float(ta.atr(high, low, close, length=14).iloc[-1])
    ema20, ema50 = (float(ta.ema(close, length=n).iloc[-1]) for n in (20, 50))
    c = float(close.iloc[-1])
    return {
        "adx": float(ta.adx(high, low, close, length=14)["ADX_14"].iloc[-1]) if adx else math.nan,
        "rsi": float(ta.rsi(close, length=14).iloc[-1]),
        "mid": abs(c - float(ta.sma(close, 50).iloc[-1])) / atr,
        "trend": math.log(ema20 / ema50),
        "above": math.log(c / ema50),
    }


def _keeps_promise(scenario: str, tail: Bars, until: int) -> bool:
    """Indicators on the closed tail candles, with margin over what the scenario promises."""
    if scenario not in ("range", "uptrend", "downtrend"):
        return True  # volatile and crash promise nothing an indicator here could miss
    got = {}
    for tf in ("15m", "1h", "4h"):
        bars = aggregate(tail, step(tf) // M5)
        got[tf] = _indicators(Bars(*(x[bars.t + step(tf) <= until] for x in bars)), adx=tf != "15m")
    if scenario == "range":
        calm = all(got[tf]["adx"] < 21 and abs(got[tf]["rsi"] - 50) < 7 and got[tf]["mid"] < 0.8 for tf in ("1h", "4h"))
        return calm and abs(got["15m"]["rsi"] - 50) < 12
    sign = 1.0 if scenario == "uptrend" else -1.0
    steady = all(sign * got[tf]["trend"] > 1e-3 and sign * got[tf]["above"] > 1e-3 for tf in ("15m", "1h"))
    return steady and got["1h"]["adx"] > 24


# --- markets, cached: natural ones per symbol, scenarios per (symbol, scenario, minute) ---
_NATURAL: OrderedDict[str, Market] = OrderedDict()
_SCENARIO: OrderedDict[tuple[str, str, int], Market] = OrderedDict()


def _natural(symbol: str, weeks: int) -> Market:
    market = _NATURAL.get(symbol)
    if market is None or len(market.root.t) < weeks:
        # whole years at a time (the series is a pure function of the week index): rarely
        # rebuilt, and a scan, building each symbol's once, computes little past its clock
        prof = _profile(symbol)
        market = _NaturalMarket(prof, -(-weeks // 52) * 52)
    return remember(_NATURAL, symbol, market, 64)


def _market(symbol: str, scenario: str | None, until: int) -> Market:
    week = floor(until, "1w")
    if scenario is None:
        return _natural(symbol, (week - GEN_S) // WEEK + 1)
    key = (symbol, scenario, until)
    if key in _SCENARIO:
        return remember(_SCENARIO, key, _SCENARIO[key], 32)
    t0 = week - _TAIL_WEEKS * WEEK
    weeks = (t0 - GEN_S) // WEEK
    if weeks <= _OVERRIDE_WEEKS:
        raise ValueError(f"scenario data needs until after {GENESIS.date()} + {_OVERRIDE_WEEKS + 3} weeks")
    nat = _natural(symbol, weeks)
    root, center = _override_root(nat.prof, nat.window("1w", GEN_S, t0 - WEEK), scenario, digest(key))
    for attempt in range(_ATTEMPTS):
        seed = digest(key, attempt)
        tail = _tail(nat.prof, scenario, seed, t0, until, float(root.c[-1]), math.exp(center))
        if _keeps_promise(scenario, tail, until):
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
    """Open times as an index: built once per window, handed out as shallow copies (own name/freq)."""
    key = t.tobytes() if len(t) <= 5_000 else None  # a backtest's long window is not worth keeping
    index = _INDEXES.get(key) if key else None
    if index is None:
        index = pd.DatetimeIndex((t * 1_000_000_000).view("datetime64[ns]"), tz=UTC, name="time")
    return remember(_INDEXES, key, index, 32).copy() if key else index


def _frame(bars: Bars) -> pd.DataFrame:
    """One (5, n) block, as pandas would consolidate the columns, handed over without a copy (a dict
    of columns costs ~4x as much); the indexes are copies, so renaming one frame's leaves the rest."""
    values = np.array(bars[1:], dtype=np.float64)  # (5, n) in one copy: cheaper than np.stack
    return pd.DataFrame(values.T, index=_time_index(bars.t), columns=_COLUMN_INDEX.copy(), copy=False)


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
