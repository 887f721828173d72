"""Generic machinery of the built-in source: counter-based randomness and top-down refinement.

A market is a weekly root (from a fixed genesis, 2000-01-03, a Monday) and optionally a
5m tail; every other timeframe is made by refining parents top-down
(1w->7x1d->6x4h->4x1h->4x15m->3x5m, 5m->5x1m; 30m is two 15m): each parent gets a
seeded Brownian bridge from its open to its close, bent into [low, high] so that exactly
one child reaches the high and one the low (the same child when the path makes both
extremes inside it, as markets do). Children aggregate back to their parent exactly
(volume up to float rounding), and a candle depends only on its ancestors, so history
never changes as the clock moves and a store can fetch incrementally. Parents are
refined in cached blocks of 16, consecutive missing blocks in one go.

Randomness is a counter-based hash (splitmix64) of (seed, stream, candle time, draw):
vectorised, order-free, and independent of numpy's Generator algorithms.

What the root and tail look like (symbols, regimes, scenarios) is decided in
:mod:`tools.market_data.builtin`.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import NamedTuple

import numpy as np

from tools.timeframes import period

GENESIS = datetime(2000, 1, 3, tzinfo=UTC)  # a Monday: week 0 of the root
GEN_S = int(GENESIS.timestamp())
WEEK = 7 * 86400
M5 = 300
_PARENT: dict[str, str] = {"1d": "1w", "4h": "1d", "1h": "4h", "15m": "1h", "5m": "15m", "1m": "5m"}
_SUB = 6  # path points per child: enough for child extremes to look natural
_BLOCK = 16  # parents cached together: small, so a window refines little it does not show
_BLOCKS_KEPT = 4096 // _BLOCK  # per market
_SPAN_MAX = 1_000  # candles a window's refinement reaches back at most in the timeframes above (see Market)
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
_MASK = (1 << 64) - 1
_C1, _C2 = _U64(0xBF58476D1CE4E5B9), _U64(0x94D049BB133111EB)
_S11, _S27, _S30, _S31 = _U64(11), _U64(27), _U64(30), _U64(31)


def _mix_inplace(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array the caller owns (in place: fewer temporaries)."""
    x += _GOLDEN
    x ^= x >> _S30
    x *= _C1
    x ^= x >> _S27
    x *= _C2
    x ^= x >> _S31
    return x


def _mix_int(x: int) -> int:
    """:func:`_mix_inplace` of one value in Python ints: a one-element array costs more than the hash."""
    if not 0 <= x <= _MASK:
        raise OverflowError(f"{x} does not fit in uint64")
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def keys(seed: int, stream: int, t: np.ndarray) -> np.ndarray:
    hashed = _mix_inplace(np.asarray(t).astype(np.uint64))
    hashed ^= _U64(_mix_int(seed ^ (stream * 0x100000001B3)))
    return _mix_inplace(hashed)


@cache  # a handful of counts exist, one per refinement level and caller (read-only arrays)
def _counters(count: int) -> np.ndarray:
    return np.arange(1, count + 1, dtype=np.uint64)[None, :] * _GOLDEN


def uniform(hashes: np.ndarray, count: int) -> np.ndarray:
    """(len(hashes), count) uniforms in (0, 1)."""
    bits = _mix_inplace(hashes[:, None] ^ _counters(count))
    bits >>= _S11
    out = bits.astype(np.float64)
    out += 0.5
    out *= 2.0**-53
    return out


def gauss(u: np.ndarray) -> np.ndarray:
    """Box-Muller on the two halves of the last axis."""
    half = u.shape[-1] // 2
    radius = np.log(u[..., :half])  # sqrt(-2 log u1) * cos(2 pi u2), in place
    radius *= -2.0
    np.sqrt(radius, out=radius)
    angle = (2.0 * np.pi) * u[..., half : 2 * half]
    np.cos(angle, out=angle)
    radius *= angle
    return radius


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
# Everything below is row-wise: a parent's children depend on that parent alone, so any
# number of parents can be refined in one call (numpy's per-call cost dominates at these
# sizes). Arithmetic keeps the operand order of the plain formulas in the comments, so
# in-place forms give the same floats bit for bit.
_KINK = 0.1 * _NOISE
_HOUR_OF_WEEK = np.arange(168)  # from Monday 00:00 UTC
# volume seasonality by hour of the week: the US session, and quieter weekends
_SEASON = (1.0 + 0.3 * np.cos(2 * np.pi * (_HOUR_OF_WEEK % 24 - 15) / 24)) * np.where(_HOUR_OF_WEEK // 24 >= 5, 0.7, 1.0)


@cache  # one per refinement level (read-only arrays)
def _grid(big: int) -> np.ndarray:
    return np.arange(big + 1) / big


def _child_starts(n: int) -> np.ndarray:
    """Path indices where each child starts (the last reduceat segment also takes the final close)."""
    return np.arange(0, n * _SUB, _SUB)


def _bridge(xo: np.ndarray, xc: np.ndarray, gz: np.ndarray, big: int) -> np.ndarray:
    """xo + (xc - xo) * g + (w - g * w[-1]) * noise, per row, w a random walk from 0."""
    w = np.empty((len(xo), big + 1))
    w[:, 0] = 0.0
    np.cumsum(gz[:, :big], axis=1, out=w[:, 1:])
    g = _grid(big)
    path = (xc - xo)[:, None] * g
    path += xo[:, None]
    tilt = g * w[:, -1:]
    np.subtract(w, tilt, out=tilt)
    tilt *= _NOISE / math.sqrt(big)
    path += tilt
    return path


def _fold_walls(path: np.ndarray, lo_wall: np.ndarray, hi_wall: np.ndarray) -> None:
    """An open/close that is itself the parent's extreme is a wall: fold the path off it, in place."""
    walled = np.flatnonzero(lo_wall | hi_wall)
    if not walled.size:  # the usual case: only walled rows are touched
        return
    sub, lo, hi = path[walled], lo_wall[walled, None], hi_wall[walled, None]
    span = np.mod(sub, 2.0)
    sub = np.where(lo & hi, np.where(span > 1.0, 2.0 - span, span), sub)
    sub = np.where(lo & ~hi, np.abs(sub), sub)
    path[walled] = np.where(hi & ~lo, 1.0 - np.abs(1.0 - sub), sub)


def _kink(path: np.ndarray, u: np.ndarray, hi_e: np.ndarray, lo_e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A bridge that never leaves [open, close] gets one interior kink so both extremes exist.

    Returns where the path then peaks and bottoms (first occurrences, as argmax/argmin):
    a kink is the row's strict extreme, so only a peak sitting on a low kink needs a new search.
    """
    big, rows = path.shape[1] - 1, np.arange(len(path))
    j = 1 + (u[:, :2] * (big - 1)).astype(np.int64)
    j_hi, j_lo = j[:, 0], np.where(j[:, 1] == j[:, 0], j[:, 0] % (big - 1) + 1, j[:, 1])
    hi_wall, lo_wall = hi_e >= 1.0, lo_e <= 0.0
    i_hi = path.argmax(axis=1)
    # max(path - edge) is max(path) - edge exactly: rounding is monotone
    need = (path[rows, i_hi] - hi_e <= 1e-9) & ~hi_wall
    if need.any():
        path[need, j_hi[need]] = hi_e[need] + _KINK
        i_hi = np.where(need, j_hi, i_hi)
    i_lo = path.argmin(axis=1)
    need = (lo_e - path[rows, i_lo] <= 1e-9) & ~lo_wall
    if need.any():
        path[need, j_lo[need]] = lo_e[need] - _KINK
        i_lo = np.where(need, j_lo, i_lo)
        _research(path, i_hi, need & (i_hi == j_lo), np.argmax)
    return i_hi, i_lo


def _research(path: np.ndarray, where: np.ndarray, rows: np.ndarray, arg: Callable[..., np.ndarray]) -> None:
    """Search again the rows whose extreme was just moved, in place."""
    if rows.any():
        where[rows] = arg(path[rows], axis=1)


def _extremes(path: np.ndarray, m: int, i_hi: np.ndarray, i_lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Peak and bottom moved off child boundaries.

    An extreme on a boundary would hand two children the parent's extreme as open/close:
    it moves one step inside a child (never onto the other extreme).
    """
    big, rows = path.shape[1] - 1, np.arange(len(path))
    on = (i_hi % m == 0) & (i_hi > 0) & (i_hi < big)
    if on.any():
        i_hi = np.where(on, i_hi + 1, i_hi)
        path[rows[on], i_hi[on]] = path[rows[on], i_hi[on] - 1] + 1e-3 * _NOISE
        i_lo = i_lo.copy()
        _research(path, i_lo, on & (i_lo == i_hi), np.argmin)  # raising a point moves only a bottom on it
    on = (i_lo % m == 0) & (i_lo > 0) & (i_lo < big)
    if on.any():
        move = np.where(i_lo + 1 == i_hi, i_lo - 1, i_lo + 1)
        path[rows[on], move[on]] = path[rows[on], i_lo[on]] - 1e-3 * _NOISE
        i_lo = np.where(on, move, i_lo)
    return i_hi, i_lo


def _bend(path: np.ndarray, i_hi: np.ndarray, i_lo: np.ndarray, hi_e: np.ndarray, lo_e: np.ndarray) -> None:
    """Stretch the parts above/below [open, close] so the path's max and min land on 1 and 0, in place."""
    rows = np.arange(len(path))
    top, bot = path[rows, i_hi], path[rows, i_lo]
    he, le = hi_e[:, None], lo_e[:, None]
    up = ((1.0 - hi_e) / np.maximum(top - hi_e, 1e-12))[:, None]
    down = (lo_e / np.maximum(lo_e - bot, 1e-12))[:, None]
    is_above, is_below = path > he, path < le
    above = path - he  # he + (path - he) * up
    above *= up
    above += he
    below = le - path  # le - (le - path) * down
    below *= down
    np.subtract(le, below, out=below)
    np.copyto(path, above, where=is_above)
    np.copyto(path, below, where=is_below)


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
    path = _bridge(xo, xc, gz, big)
    hi_e, lo_e = np.maximum(xo, xc), np.minimum(xo, xc)
    _fold_walls(path, lo_e <= 0.0, hi_e >= 1.0)
    i_hi, i_lo = _extremes(path, m, *_kink(path, u, hi_e, lo_e))
    _bend(path, i_hi, i_lo, hi_e, lo_e)
    lo_p, hi_p = par.l[:, None], par.h[:, None]
    px = path  # lo_p + y * safe, clipped to [lo_p, hi_p] (prices are positive: no NaN or -0 to mind)
    px *= safe[:, None]
    px += lo_p
    np.maximum(px, lo_p, out=px)
    np.minimum(px, hi_p, out=px)
    px[:, 0], px[:, -1] = par.o, par.c
    ends = px[:, m::m]
    # m points per child miss the extremes between them; a random wick puts them back
    # (child ranges would otherwise shrink level after level)
    wick = (_WICK * _NOISE / math.sqrt(n)) * safe[:, None, None] * -np.log(u[:, 2 : 2 + 2 * n].reshape(p, 2, n))
    # saturating, so only the child that holds the path's extreme reaches the parent's
    starts = _child_starts(n)
    top_k = np.maximum(np.maximum.reduceat(px, starts, axis=1), ends)
    bot_k = np.minimum(np.minimum.reduceat(px, starts, axis=1), ends)
    room_h, room_l = np.maximum(0.9 * (hi_p - top_k), 1e-300), np.maximum(0.9 * (bot_k - lo_p), 1e-300)
    ch = top_k + room_h * -np.expm1(-wick[:, 0] / room_h)
    cl = bot_k - room_l * -np.expm1(-wick[:, 1] / room_l)
    # true up to rounding of px already; assigning makes max(child highs) == parent high exact
    rows = np.arange(p)
    ch[rows, np.minimum(i_hi // m, n - 1)] = par.h
    cl[rows, np.minimum(i_lo // m, n - 1)] = par.l
    co, cc = px[:, :-m:m], ends
    ct = par.t[:, None] + child_step * np.arange(n)[None, :]
    # volume follows the move (range), the US session and weekdays (1970-01-01 was a Thursday)
    season = _SEASON[(ct // 3600 + 72) % 168]
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
@cache  # a handful of timeframes, asked for at every level of every window
def step(tf: str) -> int:
    return int(period(tf).total_seconds())


def floor(x: int, tf: str) -> int:
    origin = GEN_S if tf == "1w" else 0
    return x - (x - origin) % step(tf)


class Market:
    """A root (plus a 5m tail for scenarios) and the refined blocks already cut from it.

    A frame set asks every timeframe for as many candles up to one clock, smallest first. So a window's
    refinement covers, in each timeframe above, what a window of as many candles would show: refine
    then runs once per timeframe, not two or three times.
    """

    def __init__(self, prof: Profile, root: Bars, tail: Bars | None = None) -> None:
        self.prof, self.root = prof, root
        self.t0 = int(tail.t[0]) if tail is not None else None
        # refinement never reads past the data that exists (the tail stops at `until`)
        self.end = int(tail.t[-1]) + M5 if tail is not None else int(root.t[-1]) + WEEK
        self._tails: dict[str, Bars] = {"5m": tail} if tail is not None else {}
        # a block is its children's offset into the run of children it was refined with
        self._blocks: OrderedDict[tuple[str, int], tuple[Bars, int]] = OrderedDict()

    def _weeks(self, reach: int, i: int, j: int) -> Bars:
        """Root weeks i..j-1 (a root drawn lazily has them ready from ``reach`` on)."""
        return Bars(*(x[i:j] for x in self.root))

    def _tail_bars(self, tf: str) -> Bars:
        if tf not in self._tails:
            self._tails[tf] = aggregate(self._tails["5m"], step(tf) // M5)
        return self._tails[tf]

    def _children(self, tf: str, reach: int, first: int, last: int, ahead: tuple[int, int]) -> Bars:
        """Children of parent blocks first..last (``_BLOCK`` parents each), refining missing ones from ``reach`` on."""
        found = {k: self._blocks.get((tf, k)) for k in range(reach, last + 1)}
        missing = [k for k, block in found.items() if block is None]
        while missing:
            # a run of missing blocks is refined in one call: refine is row-wise, so this
            # gives what they would one by one, for a fraction of numpy's per-call cost
            run = 1
            while run < len(missing) and missing[run] == missing[0] + run:
                run += 1
            found.update(zip(missing[:run], self._refine(tf, missing[0], run, ahead), strict=True))
            missing = missing[run:]
        blocks = [remember(self._blocks, (tf, k), found[k], _BLOCKS_KEPT) for k in range(reach, last + 1)]
        kids, at = blocks[first - reach]
        size = _BLOCK * step(_PARENT[tf]) // step(tf)
        if all(run is kids for run, _ in blocks[first - reach :]):  # refined together: no copy needed
            return Bars(*(x[at : at + (last - first + 1) * size] for x in kids))
        return concat([Bars(*(x[i : i + size] for x in run)) for run, i in blocks[first - reach :]])

    def _refine(self, tf: str, block: int, count: int, ahead: tuple[int, int]) -> list[tuple[Bars, int]]:
        pp = step(_PARENT[tf])
        n = pp // step(tf)
        pa = GEN_S + block * _BLOCK * pp
        pb = min(pa + (count * _BLOCK - 1) * pp, self.end - pp)
        kids = refine(self.window(_PARENT[tf], pa, pb, ahead=ahead), n, step(tf), self.prof.seed)
        size = _BLOCK * n
        if count <= 8:
            return [(kids, i * size) for i in range(count)]
        # a cached block keeps its whole run alive: a long run (a backtest's window) is cut into copies
        return [(Bars(*(x[i * size : (i + 1) * size].copy() for x in kids)), 0) for i in range(count)]

    def window(self, tf: str, a: int, b: int, *, ahead: tuple[int, int] | None = None) -> Bars:
        """Candles with open times a..b inclusive (both aligned to ``tf``); ``ahead`` is the (clock, count)
        of the windows to expect in the timeframes above (default: this one's), refined along with it."""
        p = step(tf)
        if self.t0 is not None and b >= self.t0 and tf != "1m":
            tail = self._tail_bars(tf)
            i, j = (max(a, self.t0) - self.t0) // p, (b - self.t0) // p + 1
            part = Bars(*(x[i:j] for x in tail))
            if a >= self.t0:
                return part
            return concat([self.window(tf, a, self.t0 - p, ahead=ahead), part])
        if tf == "1w":
            i = (a - GEN_S) // WEEK
            reach = i if ahead is None else min(i, (floor(ahead[0], tf) - GEN_S) // WEEK - ahead[1])
            return self._weeks(max(reach, 0), i, i + (b - a) // p + 1)
        if tf == "30m":
            return aggregate(self.window("15m", a, b + 900), 2)
        if ahead is None:
            ahead = (b + p, min((b - a) // p + 1, _SPAN_MAX))
            reach = a
        else:  # the window of ``count`` candles of this timeframe closing by the clock starts here
            clock, count = ahead
            reach = max(min(a, floor(clock, tf) - count * p), GEN_S)
        pp = step(_PARENT[tf])
        reach, first, last = ((floor(x, _PARENT[tf]) - GEN_S) // pp // _BLOCK for x in (reach, a, b))
        kids = self._children(tf, reach, first, last, ahead)
        i = (a - int(kids.t[0])) // p
        return Bars(*(x[i : i + (b - a) // p + 1] for x in kids))
