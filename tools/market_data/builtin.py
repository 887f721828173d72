"""Deterministic, offline OHLCV for any symbol string.

Natural markets (``scenario=None``): weekly candles from a fixed genesis (2000-01-03,
a Monday) are the root; a seeded Markov chain of regimes (up, down, range, volatile)
drives their log-returns, with a slow pull to a per-symbol price level. Every other
timeframe is made by refining parents top-down (1w->7x1d->6x4h->4x1h->4x15m->3x5m,
5m->5x1m; 30m is two 15m): each parent gets a seeded Brownian bridge from its open to
its close, bent into [low, high] so that exactly one child reaches the high and one
the low (the same child when the path makes both extremes inside it, as markets do).
Children aggregate back to their parent exactly (volume up to float rounding), and a
candle depends only on its ancestors, so history never changes as the clock moves and
a store can fetch incrementally. Parents are refined in cached blocks of 64.

Named scenarios anchor to ``until``: the 26 weeks before the last 2-3 weeks get the
scenario's weekly regime, and those last weeks (the "tail", starting on a Monday so
no candle straddles it) are drawn bottom-up at 5m and aggregated, which controls the
shape every indicator sees at ``until``. A tail whose 15m/1h/4h indicators miss the
scenario's promise (with a margin) is redrawn, up to 8 times.

Randomness is a counter-based hash (splitmix64) of (seed, stream, candle time, draw):
vectorised, order-free, and independent of numpy's Generator algorithms.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import re
from collections import OrderedDict
from datetime import UTC, datetime
from typing import NamedTuple

import numpy as np
import pandas as pd

from tools.timeframes import as_utc, floor_time, last_closed_open_time, period

SCENARIOS: tuple[str, ...] = ("uptrend", "downtrend", "range", "volatile", "crash")
SUPPORTED: tuple[str, ...] = ("1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w")
COLUMNS: list[str] = ["open", "high", "low", "close", "volume"]

_GENESIS = datetime(2000, 1, 3, tzinfo=UTC)  # a Monday: week 0 of the root
_GEN_S = int(_GENESIS.timestamp())
_WEEK = 7 * 86400
_M5 = 300
_PARENT: dict[str, str] = {"1d": "1w", "4h": "1d", "1h": "4h", "15m": "1h", "5m": "15m", "1m": "5m"}
_SUB = 6  # path points per child: enough for child extremes to look natural
_OVERRIDE_WEEKS = 26  # long enough for weekly EMA20 / daily EMA50 to agree
_TAIL_WEEKS = 2
_ATTEMPTS = 8  # redraws of a scenario tail that misses its promise
_BLOCK = 64  # parents refined (and cached) together
_NOISE = 0.8  # bridge amplitude in parent ranges: Brownian-like child/parent range ratios
_WICK = 0.25  # unresolved wick between path points, same unit
_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)


class _Bars(NamedTuple):
    t: np.ndarray  # open times, int64 seconds
    o: np.ndarray
    h: np.ndarray
    l: np.ndarray  # noqa: E741
    c: np.ndarray
    v: np.ndarray


class _Profile(NamedTuple):
    seed: int
    base: float  # genesis price and long-run level
    sigma: float  # weekly log volatility
    turnover: float  # quote volume per week


# --- counter-based randomness ---------------------------------------------------
def _mix(x: np.ndarray) -> np.ndarray:
    x = x + _GOLDEN
    x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def _keys(seed: int, stream: int, t: np.ndarray) -> np.ndarray:
    base = _mix(np.array([seed ^ (stream * 0x100000001B3)], dtype=np.uint64))
    return _mix(base ^ _mix(np.asarray(t).astype(np.uint64)))


def _uniform(keys: np.ndarray, count: int) -> np.ndarray:
    """(len(keys), count) uniforms in (0, 1)."""
    j = np.arange(1, count + 1, dtype=np.uint64)[None, :] * _GOLDEN
    bits = _mix(keys[:, None] ^ j) >> _U64(11)
    return (bits.astype(np.float64) + 0.5) * 2.0**-53


def _gauss(u: np.ndarray) -> np.ndarray:
    """Box-Muller on the two halves of the last axis."""
    half = u.shape[-1] // 2
    return np.sqrt(-2.0 * np.log(u[..., :half])) * np.cos(2.0 * np.pi * u[..., half : 2 * half])


def _digest(*parts: object) -> int:
    raw = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(raw, "little")


def _ar1(e: np.ndarray, phi: float, x0: float = 0.0) -> np.ndarray:
    """x[k] = phi*x[k-1] + e[k] in closed form, chunked so phi**-k stays small."""
    out = np.empty_like(e)
    step = max(1, int(20.0 / max(-math.log(phi), 1e-12)))
    for s in range(0, len(e), step):
        k = np.arange(1, min(step, len(e) - s) + 1)
        pw = phi**k
        out[s : s + len(k)] = pw * (x0 + np.cumsum(e[s : s + len(k)] / pw))
        x0 = float(out[s + len(k) - 1])
    return out


# --- symbol profile and the weekly root -------------------------------------------
def _profile(symbol: str) -> _Profile:
    seed = _digest("builtin", symbol)
    u = _uniform(np.array([seed], dtype=np.uint64), 3)[0]
    base_asset = re.split(r"[/:\-_ ]", symbol.upper())[0]
    base_asset = re.sub(r"(USDT|USDC|BUSD|USD|EUR)$", "", base_asset) or base_asset
    if base_asset in {"BTC", "XBT", "WBTC"}:
        return _Profile(seed, 25_000.0 * 2.5 ** u[0], 0.065 + 0.02 * u[1], 4e10)
    if base_asset in {"ETH", "WETH"}:
        return _Profile(seed, 1_500.0 * 2.5 ** u[0], 0.08 + 0.02 * u[1], 2e10)
    price = math.exp(math.log(0.01) + u[0] * math.log(500 / 0.01))
    return _Profile(seed, price, 0.09 + 0.08 * u[1], 10 ** (6.0 + 3.0 * u[2]))


# Regimes: 0 up, 1 down, 2 range, 3 volatile. (drift in sigmas, vol multiplier)
_REGIME = ((0.3, 0.9), (-0.3, 1.0), (0.0, 0.55), (0.0, 1.9))
_TRANS: list[list[float]] = np.cumsum(
    [[0.90, 0.02, 0.06, 0.02], [0.02, 0.88, 0.07, 0.03], [0.04, 0.04, 0.90, 0.02], [0.06, 0.06, 0.08, 0.80]],
    axis=1,
).tolist()


def _weekly_bars(prof: _Profile, t: np.ndarray, prev: float, logc: np.ndarray, mult: np.ndarray) -> _Bars:
    """Wicks and volume for weekly closes; open = previous close keeps the path continuous."""
    u = _uniform(_keys(prof.seed, 1, t), 4)
    c = np.exp(logc)
    o = np.concatenate(([prev], c[:-1]))
    s = prof.sigma * mult
    h = np.maximum(o, c) * np.exp(s * (0.02 + 0.3 * -np.log(u[:, 0])))
    low = np.minimum(o, c) * np.exp(-s * (0.02 + 0.3 * -np.log(u[:, 1])))
    move = np.abs(np.log(c / o)) / s
    v = prof.turnover / c * mult * (0.5 + 0.6 * move) * np.exp(0.25 * _gauss(u[:, 2:4])[:, 0])
    return _Bars(t, o, h, low, c, v)


def _natural_root(prof: _Profile, weeks: int) -> _Bars:
    t = _GEN_S + _WEEK * np.arange(weeks, dtype=np.int64)
    u = _uniform(_keys(prof.seed, 0, t), 3)
    z = _gauss(u[:, :2])[:, 0].tolist()
    switch = u[:, 2].tolist()
    logc, mult = [0.0] * weeks, [0.0] * weeks
    base, lp, regime, level = math.log(prof.base), math.log(prof.base), 2, math.log(prof.base)
    for i in range(weeks):
        new = bisect.bisect_left(_TRANS[regime], switch[i])
        if new == 2 and regime != 2:
            level = lp  # a range forms around wherever the price is
        regime = min(new, 3)
        drift, m = _REGIME[regime]
        dev = lp - base
        # slow pull to the symbol's level (harder beyond ~e^0.8) keeps prices plausible
        pull = -0.02 * dev - 0.15 * max(abs(dev) - 0.8, 0.0) * math.copysign(1.0, dev)
        if regime == 2:
            pull -= 0.35 * (lp - level)
        lp += prof.sigma * (drift + m * z[i]) + pull
        logc[i], mult[i] = lp, m
    return _weekly_bars(prof, t, prof.base, np.array(logc), np.array(mult))


def _override_root(prof: _Profile, nat: _Bars, scenario: str, seed: int) -> tuple[_Bars, float]:
    """Replace the weeks before the tail with the scenario's weekly regime."""
    k = len(nat.t) - _OVERRIDE_WEEKS
    start, s = math.log(nat.c[k - 1]), prof.sigma
    t = nat.t[k:]
    z = _gauss(_uniform(_keys(seed, 2, t), 2))[:, 0]
    if scenario in ("uptrend", "downtrend"):
        sign = 1.0 if scenario == "uptrend" else -1.0
        # noise around the trend line, not a random walk: a streak of bad weeks cannot undo it
        logc, mult = start + sign * s * (0.3 * np.arange(1, _OVERRIDE_WEEKS + 1) + _ar1(0.3 * z, 0.5)), 0.5
    elif scenario == "range":
        logc, mult = start + 0.25 * s * z, 0.55
    elif scenario == "volatile":
        logc, mult = start + s * _ar1(2.0 * z, 0.7), 2.0
    else:  # crash: the market is its natural self until the tail
        return nat, start
    bars = _weekly_bars(prof, t, float(nat.c[k - 1]), logc, np.full(_OVERRIDE_WEEKS, mult))
    return _Bars(*(np.concatenate((a[:k], b)) for a, b in zip(nat, bars, strict=True))), start


# --- refinement: parent candles -> child candles ----------------------------------
def _refine(par: _Bars, n: int, step: int, seed: int) -> _Bars:
    """Children of each parent: a Brownian bridge from open to close, bent to fit [low, high].

    A monotone piecewise-linear map of price (fixed between open and close, stretching
    the parts above / below) sends the bridge's own max to the parent high and its min to
    the parent low, so the path keeps Brownian texture -- child ranges scale like
    1/sqrt(n) of the parent's at every level -- and the children aggregate back exactly.
    """
    p, m = len(par.t), _SUB
    big = n * m
    u = _uniform(_keys(seed, step, par.t), 2 + 2 * n + 2 * (big + n))
    gz = _gauss(u[:, 2 + 2 * n :])
    rng = par.h - par.l
    safe = np.where(rng > 0, rng, 1.0)  # a flat parent gets flat children, not NaN
    xo, xc = (par.o - par.l) / safe, (par.c - par.l) / safe
    g = np.arange(big + 1) / big
    w = np.concatenate((np.zeros((p, 1)), np.cumsum(gz[:, :big], axis=1)), axis=1)
    path = xo[:, None] + (xc - xo)[:, None] * g + (w - g * w[:, -1:]) * (_NOISE / math.sqrt(big))
    hi_e, lo_e = np.maximum(xo, xc)[:, None], np.minimum(xo, xc)[:, None]
    # an open/close that is itself the parent's extreme is a wall: fold the path off it
    lo_wall, hi_wall = lo_e <= 0.0, hi_e >= 1.0
    span = np.mod(path, 2.0)
    path = np.where(lo_wall & hi_wall, np.where(span > 1.0, 2.0 - span, span), path)
    path = np.where(lo_wall & ~hi_wall, np.abs(path), path)
    path = np.where(hi_wall & ~lo_wall, 1.0 - np.abs(1.0 - path), path)
    rows = np.arange(p)
    # a bridge that never leaves [open, close] gets one interior kink so both extremes exist
    j_hi = 1 + (u[:, 0] * (big - 1)).astype(np.int64)
    j_lo = 1 + (u[:, 1] * (big - 1)).astype(np.int64)
    j_lo = np.where(j_lo == j_hi, j_hi % (big - 1) + 1, j_lo)
    for side, j, edge, wall in ((1.0, j_hi, hi_e, hi_wall), (-1.0, j_lo, lo_e, lo_wall)):
        need = ((side * (path - edge)).max(axis=1) <= 1e-9) & ~wall[:, 0]
        path[rows[need], j[need]] = edge[need, 0] + side * 0.1 * _NOISE
    # an extreme on a child boundary would hand two children the parent's extreme as
    # open/close: move it one step inside a child (never onto the other extreme)
    i_hi = path.argmax(axis=1)
    on = (i_hi % m == 0) & (i_hi > 0) & (i_hi < big)
    i_hi = np.where(on, i_hi + 1, i_hi)
    path[rows[on], i_hi[on]] = path[rows[on], i_hi[on] - 1] + 1e-3 * _NOISE
    i_lo = path.argmin(axis=1)
    on = (i_lo % m == 0) & (i_lo > 0) & (i_lo < big)
    move = np.where(i_lo + 1 == i_hi, i_lo - 1, i_lo + 1)
    path[rows[on], move[on]] = path[rows[on], i_lo[on]] - 1e-3 * _NOISE
    i_lo = np.where(on, move, i_lo)
    top, bot = path[rows, i_hi][:, None], path[rows, i_lo][:, None]
    above = hi_e + (path - hi_e) * ((1.0 - hi_e) / np.maximum(top - hi_e, 1e-12))
    below = lo_e - (lo_e - path) * (lo_e / np.maximum(lo_e - bot, 1e-12))
    y = np.where(path > hi_e, above, np.where(path < lo_e, below, path))
    lo_p, hi_p = par.l[:, None], par.h[:, None]
    px = np.clip(lo_p + y * safe[:, None], lo_p, hi_p)
    px[:, 0], px[:, -1] = par.o, par.c
    ends = px[:, m::m]
    # m points per child miss the extremes between them; a random wick puts them back
    # (child ranges would otherwise shrink level after level)
    wick = (_WICK * _NOISE / math.sqrt(n)) * safe[:, None, None] * -np.log(u[:, 2 : 2 + 2 * n].reshape(p, 2, n))
    # saturating, so only the child that holds the path's extreme reaches the parent's
    top_k = np.maximum(px[:, :big].reshape(p, n, m).max(axis=2), ends)
    bot_k = np.minimum(px[:, :big].reshape(p, n, m).min(axis=2), ends)
    room_h, room_l = np.maximum(0.9 * (hi_p - top_k), 1e-300), np.maximum(0.9 * (bot_k - lo_p), 1e-300)
    ch = top_k + room_h * -np.expm1(-wick[:, 0] / room_h)
    cl = bot_k - room_l * -np.expm1(-wick[:, 1] / room_l)
    # true up to rounding of px already; assigning makes max(child highs) == parent high exact
    ch[rows, np.minimum(i_hi // m, n - 1)] = par.h
    cl[rows, np.minimum(i_lo // m, n - 1)] = par.l
    co, cc = px[:, :-m:m], ends
    ct = par.t[:, None] + step * np.arange(n)[None, :]
    # volume follows the move (range), the US session and weekdays
    hour, dow = (ct // 3600) % 24, (ct // 86400 + 3) % 7
    season = (1.0 + 0.3 * np.cos(2 * np.pi * (hour - 15) / 24)) * np.where(dow >= 5, 0.7, 1.0)
    wt = (0.15 + (ch - cl) / safe[:, None]) * season * np.exp(0.3 * gz[:, big : big + n])
    cv = par.v[:, None] * (wt / wt.sum(axis=1, keepdims=True))
    return _Bars(ct.ravel(), co.ravel(), ch.ravel(), cl.ravel(), cc.ravel(), cv.ravel())


def _aggregate(bars: _Bars, k: int) -> _Bars:
    g = len(bars.t) // k
    r = [a[: g * k].reshape(g, k) for a in bars]
    return _Bars(r[0][:, 0], r[1][:, 0], r[2].max(axis=1), r[3].min(axis=1), r[4][:, -1], r[5].sum(axis=1))


# --- scenario tails: the last 2-3 weeks drawn at 5m --------------------------------
def _tail(prof: _Profile, scenario: str, seed: int, t0: int, until: int, p0: float, center: float) -> _Bars:
    """5m candles from ``t0`` up to the one forming at ``until`` (its future half is never served)."""
    n = (until - until % _M5 - t0) // _M5 + 1
    t = t0 + _M5 * np.arange(n, dtype=np.int64)
    age = (until - (t + _M5)) / 3600.0  # hours from each close to until
    # the symbol's 5m volatility, scaled to what refined (natural) 5m candles show
    s = 0.6 * prof.sigma / math.sqrt(2016.0)
    u = _uniform(_keys(seed, 3, t), 8)
    e = _gauss(u[:, :6])  # fast noise, slow noise, volume noise
    k = np.arange(1, n + 1)
    fast = _ar1(e[:, 0], math.exp(-5 / 20))  # choppy, mean-reverting noise: bounded at every scale
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
        swing = s * (1.6 * fast + 0.6 * _ar1(e[:, 1], math.exp(-5 / 240)))
        dev, wick = mid + swing * (1.0 - 0.6 * np.exp(-np.maximum(age, 0.0) / 3.0)), s
    elif scenario == "volatile":
        swing = _ar1(e[:, 1] * 4.0, math.exp(-5 / 4320)) + 4.0 * fast
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
    return _Bars(t, o, h, low, c, v)


# --- checking a tail: random draws can still wander off the promised shape ------------
def _rma(x: np.ndarray, n: int) -> np.ndarray:
    """Wilder's running mean (seeded with the first value; the tail is long enough to forget it)."""
    return _ar1(x / n, 1.0 - 1.0 / n, x0=float(x[0]))


def _ema(x: np.ndarray, n: int) -> float:
    a = 2.0 / (n + 1)
    return float(_ar1(a * x, 1.0 - a, x0=float(x[0]))[-1])


def _indicators(bars: _Bars) -> dict[str, float]:
    h, low, c = bars.h, bars.l, bars.c
    up, dn = np.diff(h), -np.diff(low)
    tr = np.maximum(h[1:] - low[1:], np.maximum(np.abs(h[1:] - c[:-1]), np.abs(low[1:] - c[:-1])))
    atr = _rma(tr, 14)
    pdi = _rma(np.where((up > dn) & (up > 0), up, 0.0), 14) / atr
    ndi = _rma(np.where((dn > up) & (dn > 0), dn, 0.0), 14) / atr
    adx = _rma(100 * np.abs(pdi - ndi) / np.maximum(pdi + ndi, 1e-300), 14)
    d = np.diff(c)
    gain, loss = _rma(np.maximum(d, 0.0), 14), _rma(np.maximum(-d, 0.0), 14)
    return {
        "adx": float(adx[-1]),
        "rsi": float(100 * gain[-1] / max(gain[-1] + loss[-1], 1e-300)),
        "mid": float(abs(c[-1] - c[-50:].mean()) / atr[-1]),
        "trend": float(np.log(_ema(c, 20) / _ema(c, 50))),
        "above": float(np.log(c[-1] / _ema(c, 50))),
    }


def _keeps_promise(scenario: str, tail: _Bars, until: int) -> bool:
    """Indicators on the closed tail candles, with margin over what the scenario promises."""
    got = {}
    for tf in ("15m", "1h", "4h"):
        bars = _aggregate(tail, _step(tf) // _M5)
        got[tf] = _indicators(_Bars(*(x[bars.t + _step(tf) <= until] for x in bars)))
    if scenario == "range":
        calm = all(got[tf]["adx"] < 21 and abs(got[tf]["rsi"] - 50) < 7 and got[tf]["mid"] < 0.8 for tf in ("1h", "4h"))
        return calm and abs(got["15m"]["rsi"] - 50) < 12
    if scenario in ("uptrend", "downtrend"):
        sign = 1.0 if scenario == "uptrend" else -1.0
        steady = all(sign * got[tf]["trend"] > 1e-3 and sign * got[tf]["above"] > 1e-3 for tf in ("15m", "1h"))
        return steady and got["1h"]["adx"] > 24
    return True


# --- markets: a root (+ tail) that windows of any timeframe are cut from ------------
def _step(tf: str) -> int:
    return int(period(tf).total_seconds())


def _floor(x: int, tf: str) -> int:
    origin = _GEN_S if tf == "1w" else 0
    return x - (x - origin) % _step(tf)


class _Market:
    """A root (plus a 5m tail for scenarios) and the refined blocks already cut from it."""

    def __init__(self, prof: _Profile, root: _Bars, tail: _Bars | None = None) -> None:
        self.prof, self.root = prof, root
        self.t0 = int(tail.t[0]) if tail is not None else None
        # refinement never reads past the data that exists (the tail stops at `until`)
        self.end = int(tail.t[-1]) + _M5 if tail is not None else int(root.t[-1]) + _WEEK
        self._tails: dict[str, _Bars] = {"5m": tail} if tail is not None else {}
        self._blocks: OrderedDict[tuple[str, int], _Bars] = OrderedDict()

    def _tail_bars(self, tf: str) -> _Bars:
        if tf not in self._tails:
            self._tails[tf] = _aggregate(self._tails["5m"], _step(tf) // _M5)
        return self._tails[tf]

    def _children(self, tf: str, block: int) -> _Bars:
        """Children of ``_BLOCK`` consecutive parents: the unit of caching, shared by all windows."""
        kids = self._blocks.get((tf, block))
        if kids is None:
            pp = _step(_PARENT[tf])
            pa = _GEN_S + block * _BLOCK * pp
            pb = min(pa + (_BLOCK - 1) * pp, self.end - pp)
            kids = _refine(self.window(_PARENT[tf], pa, pb), pp // _step(tf), _step(tf), self.prof.seed)
        return _remember(self._blocks, (tf, block), kids, 64)

    def window(self, tf: str, a: int, b: int) -> _Bars:
        """Candles with open times a..b inclusive (both aligned to ``tf``)."""
        p = _step(tf)
        if self.t0 is not None and b >= self.t0 and tf != "1m":
            tail = self._tail_bars(tf)
            i, j = (max(a, self.t0) - self.t0) // p, (b - self.t0) // p + 1
            part = _Bars(*(x[i:j] for x in tail))
            if a >= self.t0:
                return part
            return _concat([self.window(tf, a, self.t0 - p), part])
        if tf == "1w":
            i = (a - _GEN_S) // _WEEK
            return _Bars(*(x[i : i + (b - a) // p + 1] for x in self.root))
        if tf == "30m":
            return _aggregate(self.window("15m", a, b + 900), 2)
        pp = _step(_PARENT[tf])
        first, last = ((_floor(x, _PARENT[tf]) - _GEN_S) // pp // _BLOCK for x in (a, b))
        kids = _concat([self._children(tf, k) for k in range(first, last + 1)])
        i = (a - int(kids.t[0])) // p
        return _Bars(*(x[i : i + (b - a) // p + 1] for x in kids))


def _concat(parts: list[_Bars]) -> _Bars:
    return parts[0] if len(parts) == 1 else _Bars(*(np.concatenate(x) for x in zip(*parts, strict=True)))


def _remember[K, V](cache: OrderedDict[K, V], key: K, value: V, size: int) -> V:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > size:
        cache.popitem(last=False)
    return value


_NATURAL: OrderedDict[str, _Market] = OrderedDict()
_SCENARIO: OrderedDict[tuple[str, str, int], _Market] = OrderedDict()


def _natural(symbol: str, weeks: int) -> _Market:
    market = _NATURAL.get(symbol)
    if market is None or len(market.root.t) < weeks:
        # whole decades at a time; the series is a pure function of the week index
        prof = _profile(symbol)
        market = _Market(prof, _natural_root(prof, -(-weeks // 520) * 520))
    return _remember(_NATURAL, symbol, market, 64)


def _market(symbol: str, scenario: str | None, until: int) -> _Market:
    week = _floor(until, "1w")
    if scenario is None:
        return _natural(symbol, (week - _GEN_S) // _WEEK + 1)
    key = (symbol, scenario, until)
    if key in _SCENARIO:
        return _remember(_SCENARIO, key, _SCENARIO[key], 32)
    t0 = week - _TAIL_WEEKS * _WEEK
    weeks = (t0 - _GEN_S) // _WEEK
    if weeks <= _OVERRIDE_WEEKS:
        raise ValueError(f"scenario data needs until after {_GENESIS.date()} + {_OVERRIDE_WEEKS + 3} weeks")
    nat = _natural(symbol, weeks)
    root, center = _override_root(nat.prof, _Bars(*(x[:weeks] for x in nat.root)), scenario, _digest(key))
    for attempt in range(_ATTEMPTS):
        seed = _digest(key, attempt)
        tail = _tail(nat.prof, scenario, seed, t0, until, float(root.c[-1]), math.exp(center))
        if _keeps_promise(scenario, tail, until):
            break
    return _remember(_SCENARIO, key, _Market(nat.prof, root, tail), 32)


class BuiltinSource:
    """Offline market data: any symbol, natural or a named scenario (see module docstring)."""

    name: str = "builtin"

    def __init__(self, scenario: str | None = None) -> None:
        if scenario is not None and scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)} or None")
        self.scenario = scenario

    def candles(self, symbol: str, timeframe: str, *, until: datetime, limit: int = 300) -> pd.DataFrame:
        if timeframe not in SUPPORTED:
            raise ValueError(f"builtin source supports timeframes {', '.join(SUPPORTED)}; got {timeframe!r}")
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        until = as_utc(until)
        p = _step(timeframe)
        last = int(last_closed_open_time(until, timeframe).timestamp())
        first = last - (limit - 1) * p
        if first < _GEN_S:
            raise ValueError(f"builtin history starts {_GENESIS.date()}: {limit} x {timeframe} to {until} is earlier")
        # scenarios anchor to the minute, so seconds of jitter in `until` change nothing
        anchor = int(floor_time(until, "1m").timestamp())
        bars = _market(symbol, self.scenario, anchor).window(timeframe, first, last)
        index = pd.DatetimeIndex(bars.t.astype("datetime64[s]").astype("datetime64[ns]"), name="time")
        index = index.tz_localize(UTC)
        return pd.DataFrame(dict(zip(COLUMNS, bars[1:], strict=True)), index=index, dtype=np.float64)

    async def fetch_candles(self, symbol: str, timeframe: str, *, until: datetime, limit: int = 300) -> pd.DataFrame:
        return self.candles(symbol, timeframe, until=until, limit=limit)
