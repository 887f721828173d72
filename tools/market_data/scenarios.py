"""Named scenarios: a natural market bent to a promised shape at one clock, ``until``.

The 26 weeks before the last 2-3 weeks get the scenario's weekly regime, and those last weeks (the
"tail", starting on a Monday so no candle straddles it) are drawn bottom-up at 5m and aggregated,
which controls the shape every indicator sees at ``until``. Whether a tail keeps the promise is
checked with the indicators the strategies use (pandas-ta); the caller redraws one that misses.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pandas_ta as ta

from tools.market_data.market import step
from tools.market_data.natural import weekly_bars
from tools.market_data.synthetic import M5, Bars, Profile, aggregate, ar1, gauss, keys, uniform

OVERRIDE_WEEKS = 26  # long enough for weekly EMA20 / daily EMA50 to agree
TAIL_WEEKS = 2
TRENDING_ADX = 30.0  # 1h ADX a trend scenario promises: well clear of the faders' 25


def override_root(prof: Profile, nat: Bars, scenario: str, seed: int) -> tuple[Bars, float]:
    """Replace the weeks before the tail with the scenario's weekly regime."""
    k = len(nat.t) - OVERRIDE_WEEKS
    start, s = math.log(nat.c[k - 1]), prof.sigma
    t = nat.t[k:]
    z = gauss(uniform(keys(seed, 2, t), 2))[:, 0]
    if scenario in ("uptrend", "downtrend"):
        sign = 1.0 if scenario == "uptrend" else -1.0
        # noise around the trend line, not a random walk: a streak of bad weeks cannot undo it
        logc, mult = start + sign * s * (0.3 * np.arange(1, OVERRIDE_WEEKS + 1) + ar1(0.3 * z, 0.5)), 0.5
    elif scenario == "range":
        logc, mult = start + 0.25 * s * z, 0.55
    elif scenario == "volatile":
        logc, mult = start + s * ar1(2.0 * z, 0.7), 2.0
    else:  # crash: the market is its natural self until the tail
        return nat, start
    bars = weekly_bars(prof, t, float(nat.c[k - 1]), logc, np.full(OVERRIDE_WEEKS, mult))
    return Bars(*(np.concatenate((a[:k], b)) for a, b in zip(nat, bars, strict=True))), start


# --- scenario tails: the last 2-3 weeks drawn at 5m --------------------------------
def draw_tail(prof: Profile, scenario: str, seed: int, t0: int, until: int, p0: float, center: float) -> Bars:
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


def keeps_promise(scenario: str, tail: Bars, until: int) -> bool:
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
    # A trend strong enough that the faders stand aside: they fade only below ADX 25, and a tail
    # at 24.8 once let a swing-failure short disagree with the trend (a HOLD, not the promised BUY).
    return steady and got["1h"]["adx"] > TRENDING_ADX
