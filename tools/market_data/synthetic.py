"""Generic machinery of the built-in source: counter-based randomness and top-down refinement.

A market is a weekly root (from a fixed genesis, 2000-01-03, a Monday) and optionally a
5m tail; every other timeframe is made by refining parents top-down
(1w->7x1d->6x4h->4x1h->4x15m->3x5m, 5m->5x1m; 30m is two 15m): each parent gets a
seeded Brownian bridge from its open to its close, bent into [low, high] so that exactly
one child reaches the high and one the low (the same child when the path makes both
extremes inside it, as markets do). Children aggregate back to their parent exactly
(volume up to float rounding), and a candle depends only on its ancestors, so history
never changes as the clock moves and a store can fetch incrementally. Parents are
refined in cached blocks of 64.

Randomness is a counter-based hash (splitmix64) of (seed, stream, candle time, draw):
vectorised, order-free, and independent of numpy's Generator algorithms.

What the root and tail look like (symbols, regimes, scenarios) is decided in
:mod:`tools.market_data.builtin`.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from datetime import UTC, datetime
from typing import NamedTuple

import numpy as np

from tools.timeframes import period

GENESIS = datetime(2000, 1, 3, tzinfo=UTC)  # a Monday: week 0 of the root
GEN_S = int(GENESIS.timestamp())
WEEK = 7 * 86400
M5 = 300
_PARENT: dict[str, str] = {"1d": "1w", "4h": "1d", "1h": "4h", "15m": "1h", "5m": "15m", "1m": "5m"}
_SUB = 6  # path points per child: enough for child extremes to look natural
_BLOCK = 64  # parents refined (and cached) together
_NOISE = 0.8  # bridge amplitude in parent ranges: Brownian-like child/parent range ratios
_WICK = 0.25  # unresolved wick between path points, same unit
_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)


class Bars(NamedTuple):
    t: np.ndarray  # open times, int64 seconds
    o: np.ndarray
    h: np.ndarray
    l: np.ndarray  # noqa: E741
    c: np.ndarray
    v: np.ndarray


class Profile(NamedTuple):
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


def keys(seed: int, stream: int, t: np.ndarray) -> np.ndarray:
    base = _mix(np.array([seed ^ (stream * 0x100000001B3)], dtype=np.uint64))
    return _mix(base ^ _mix(np.asarray(t).astype(np.uint64)))


def uniform(hashes: np.ndarray, count: int) -> np.ndarray:
    """(len(hashes), count) uniforms in (0, 1)."""
    j = np.arange(1, count + 1, dtype=np.uint64)[None, :] * _GOLDEN
    bits = _mix(hashes[:, None] ^ j) >> _U64(11)
    return (bits.astype(np.float64) + 0.5) * 2.0**-53


def gauss(u: np.ndarray) -> np.ndarray:
    """Box-Muller on the two halves of the last axis."""
    half = u.shape[-1] // 2
    return np.sqrt(-2.0 * np.log(u[..., :half])) * np.cos(2.0 * np.pi * u[..., half : 2 * half])


def digest(*parts: object) -> int:
    raw = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(raw, "little")


def ar1(e: np.ndarray, phi: float, x0: float = 0.0) -> np.ndarray:
    """x[k] = phi*x[k-1] + e[k] in closed form, chunked so phi**-k stays small."""
    out = np.empty_like(e)
    chunk = max(1, int(20.0 / max(-math.log(phi), 1e-12)))
    for s in range(0, len(e), chunk):
        k = np.arange(1, min(chunk, len(e) - s) + 1)
        pw = phi**k
        out[s : s + len(k)] = pw * (x0 + np.cumsum(e[s : s + len(k)] / pw))
        x0 = float(out[s + len(k) - 1])
    return out


# --- refinement: parent candles -> child candles ----------------------------------
def refine(par: Bars, n: int, child_step: int, seed: int) -> Bars:
    """Children of each parent: a Brownian bridge from open to close, bent to fit [low, high].

    A monotone piecewise-linear map of price (fixed between open and close, stretching
    the parts above / below) sends the bridge's own max to the parent high and its min to
    the parent low, so the path keeps Brownian texture -- child ranges scale like
    1/sqrt(n) of the parent's at every level -- and the children aggregate back exactly.
    """
    p, m = len(par.t), _SUB
    big = n * m
    u = uniform(keys(seed, child_step, par.t), 2 + 2 * n + 2 * (big + n))
    gz = gauss(u[:, 2 + 2 * n :])
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
    ct = par.t[:, None] + child_step * np.arange(n)[None, :]
    # volume follows the move (range), the US session and weekdays
    hour, dow = (ct // 3600) % 24, (ct // 86400 + 3) % 7
    season = (1.0 + 0.3 * np.cos(2 * np.pi * (hour - 15) / 24)) * np.where(dow >= 5, 0.7, 1.0)
    wt = (0.15 + (ch - cl) / safe[:, None]) * season * np.exp(0.3 * gz[:, big : big + n])
    cv = par.v[:, None] * (wt / wt.sum(axis=1, keepdims=True))
    return Bars(ct.ravel(), co.ravel(), ch.ravel(), cl.ravel(), cc.ravel(), cv.ravel())


def aggregate(bars: Bars, k: int) -> Bars:
    g = len(bars.t) // k
    r = [a[: g * k].reshape(g, k) for a in bars]
    return Bars(r[0][:, 0], r[1][:, 0], r[2].max(axis=1), r[3].min(axis=1), r[4][:, -1], r[5].sum(axis=1))


def concat(parts: list[Bars]) -> Bars:
    return parts[0] if len(parts) == 1 else Bars(*(np.concatenate(x) for x in zip(*parts, strict=True)))


def remember[K, V](cache: OrderedDict[K, V], key: K, value: V, size: int) -> V:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > size:
        cache.popitem(last=False)
    return value


# --- markets: a root (+ tail) that windows of any timeframe are cut from ------------
def step(tf: str) -> int:
    return int(period(tf).total_seconds())


def floor(x: int, tf: str) -> int:
    origin = GEN_S if tf == "1w" else 0
    return x - (x - origin) % step(tf)


class Market:
    """A root (plus a 5m tail for scenarios) and the refined blocks already cut from it."""

    def __init__(self, prof: Profile, root: Bars, tail: Bars | None = None) -> None:
        self.prof, self.root = prof, root
        self.t0 = int(tail.t[0]) if tail is not None else None
        # refinement never reads past the data that exists (the tail stops at `until`)
        self.end = int(tail.t[-1]) + M5 if tail is not None else int(root.t[-1]) + WEEK
        self._tails: dict[str, Bars] = {"5m": tail} if tail is not None else {}
        self._blocks: OrderedDict[tuple[str, int], Bars] = OrderedDict()

    def _tail_bars(self, tf: str) -> Bars:
        if tf not in self._tails:
            self._tails[tf] = aggregate(self._tails["5m"], step(tf) // M5)
        return self._tails[tf]

    def _children(self, tf: str, block: int) -> Bars:
        """Children of ``_BLOCK`` consecutive parents: the unit of caching, shared by all windows."""
        kids = self._blocks.get((tf, block))
        if kids is None:
            pp = step(_PARENT[tf])
            pa = GEN_S + block * _BLOCK * pp
            pb = min(pa + (_BLOCK - 1) * pp, self.end - pp)
            kids = refine(self.window(_PARENT[tf], pa, pb), pp // step(tf), step(tf), self.prof.seed)
        return remember(self._blocks, (tf, block), kids, 64)

    def window(self, tf: str, a: int, b: int) -> Bars:
        """Candles with open times a..b inclusive (both aligned to ``tf``)."""
        p = step(tf)
        if self.t0 is not None and b >= self.t0 and tf != "1m":
            tail = self._tail_bars(tf)
            i, j = (max(a, self.t0) - self.t0) // p, (b - self.t0) // p + 1
            part = Bars(*(x[i:j] for x in tail))
            if a >= self.t0:
                return part
            return concat([self.window(tf, a, self.t0 - p), part])
        if tf == "1w":
            i = (a - GEN_S) // WEEK
            return Bars(*(x[i : i + (b - a) // p + 1] for x in self.root))
        if tf == "30m":
            return aggregate(self.window("15m", a, b + 900), 2)
        pp = step(_PARENT[tf])
        first, last = ((floor(x, _PARENT[tf]) - GEN_S) // pp // _BLOCK for x in (a, b))
        kids = concat([self._children(tf, k) for k in range(first, last + 1)])
        i = (a - int(kids.t[0])) // p
        return Bars(*(x[i : i + (b - a) // p + 1] for x in kids))
