"""Generic machinery of the built-in source: counter-based randomness and top-down refinement.

A market is a weekly root (from a fixed genesis, 2000-01-03, a Monday) and optionally a
5m tail; every other timeframe is made by refining parents top-down
(1w->7x1d->6x4h->4x1h->4x15m->3x5m, 5m->5x1m; 30m is two 15m): each parent gets a
seeded Brownian bridge from its open to its close, bent into [low, high] so that exactly
one child reaches the high and one the low (the same child when the path makes both
extremes inside it, as markets do). Children aggregate back to their parent exactly
(volume up to float rounding), and a candle depends only on its ancestors, so history
never changes as the clock moves and a store can fetch incrementally. Which parents are
refined when, and the blocks kept, is :class:`tools.market_data.market.Market`.

Randomness is a counter-based hash (splitmix64) of (seed, stream, candle time, draw):
vectorised, order-free, and independent of numpy's Generator algorithms.

What the root and tail look like is decided in :mod:`tools.market_data.natural` (symbols,
regimes) and :mod:`tools.market_data.scenarios`.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import NamedTuple

import numpy as np

GENESIS = datetime(2000, 1, 3, tzinfo=UTC)  # a Monday: week 0 of the root
GEN_S = int(GENESIS.timestamp())
WEEK = 7 * 86400
M5 = 300
_SUB = 6  # path points per child: enough for child extremes to look natural
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


# a scan asks every symbol for the same candle times: the times' half of the hash is shared
_MIXED_TIMES: OrderedDict[bytes, np.ndarray] = OrderedDict()


def keys(seed: int, stream: int, t: np.ndarray) -> np.ndarray:
    times = np.asarray(t).astype(np.uint64)
    key = times.tobytes() if times.ndim == 1 and len(times) <= 4096 else None  # bytes alone do not give a shape
    mixed = _MIXED_TIMES.get(key) if key else None
    if mixed is None:
        mixed = _mix_inplace(times)
        if key:
            remember(_MIXED_TIMES, key, mixed, 64)
    hashed = mixed ^ _U64(_mix_int(seed ^ (stream * 0x100000001B3)))
    return _mix_inplace(hashed)


@cache  # a handful of counts exist, one per refinement level and caller (read-only arrays)
def _counters(count: int) -> np.ndarray:
    return np.arange(1, count + 1, dtype=np.uint64)[None, :] * _GOLDEN


def uniform(hashes: np.ndarray, count: int) -> np.ndarray:
    """(len(hashes), count) uniforms in (0, 1)."""
    bits = _mix_inplace(hashes[:, None] ^ _counters(count))
    bits >>= _S11  # now below 2**53: as int64, a faster conversion to the same (exact) floats
    out = bits.view(np.int64).astype(np.float64)
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
# number of parents can be refined in one call. numpy's per-call cost dominates at these
# sizes, so the steps index the path flat, work in place, and look per-level constants up.
# Arithmetic keeps the operand order of the plain formulas in the comments (or an exactly
# equal one: x * -y == -(x * y), x + -y == x - y), so the floats are the same bit for bit.
_KINK = 0.1 * _NOISE
_NUDGE = 1e-3 * _NOISE  # how far an extreme moved off a child boundary sticks out
_HOUR_OF_WEEK = np.arange(168)  # from Monday 00:00 UTC
# volume seasonality by hour of the week: the US session, and quieter weekends
_SEASON = (1.0 + 0.3 * np.cos(2 * np.pi * (_HOUR_OF_WEEK % 24 - 15) / 24)) * np.where(_HOUR_OF_WEEK // 24 >= 5, 0.7, 1.0)


class _Level(NamedTuple):
    """What refining into n children of ``_SUB`` path points each always uses (read-only arrays)."""

    grid: np.ndarray  # path point -> its position in [0, 1]
    starts: np.ndarray  # path points where each child starts (the last reduceat segment also takes the final close)
    on_boundary: np.ndarray  # path point -> shared by two children (interior multiples of _SUB)
    child_of: np.ndarray  # path point -> the child whose range it sets (the final close: the last child)


@cache  # one per refinement level
def _level(n: int) -> _Level:
    big = n * _SUB
    point = np.arange(big + 1)
    return _Level(
        point / big,
        np.arange(0, big, _SUB),
        (point % _SUB == 0) & (point > 0) & (point < big),
        np.minimum(point // _SUB, n - 1),
    )


@lru_cache(maxsize=64)  # a few parent counts per level, the same for every symbol of a scan
def _row_starts(rows: int, width: int) -> np.ndarray:
    """Flat index of each row's first element in a C-ordered (rows, width) array."""
    return np.arange(rows) * width


@lru_cache(maxsize=64)
def _child_offsets(n: int, child_step: int) -> np.ndarray:
    return child_step * np.arange(n)[None, :]


def _bridge(xo: np.ndarray, xc: np.ndarray, gz: np.ndarray, big: int, grid: np.ndarray) -> np.ndarray:
    """xo + (xc - xo) * g + (w - g * w[-1]) * noise, per row, w a random walk from 0 (C-ordered)."""
    w = np.empty((len(xo), big + 1))
    w[:, 0] = 0.0
    gz[:, :big].cumsum(axis=1, out=w[:, 1:])
    path = (xc - xo)[:, None] * grid
    path += xo[:, None]
    tilt = grid * w[:, -1:]
    np.subtract(w, tilt, out=tilt)
    tilt *= _NOISE / math.sqrt(big)
    path += tilt
    return path


def _fold_walls(path: np.ndarray, lo_wall: np.ndarray, hi_wall: np.ndarray) -> None:
    """An open/close that is itself the parent's extreme is a wall: fold the path off it, in place."""
    walled = (lo_wall | hi_wall).nonzero()[0]
    if not walled.size:  # the usual case: only walled rows are touched
        return
    sub, lo, hi = path[walled], lo_wall[walled, None], hi_wall[walled, None]
    span = np.mod(sub, 2.0)
    sub = np.where(lo & hi, np.where(span > 1.0, 2.0 - span, span), sub)
    sub = np.where(lo & ~hi, np.abs(sub), sub)
    path[walled] = np.where(hi & ~lo, 1.0 - np.abs(1.0 - sub), sub)


def _kink(path: np.ndarray, row0: np.ndarray, u: np.ndarray, edges: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A bridge that never leaves [open, close] gets one interior kink so both extremes exist.

    Returns where the path then peaks and bottoms (first occurrences, as argmax/argmin):
    a kink is the row's strict extreme, so only a peak sitting on a low kink needs a new search.
    ``row0`` is each row's start in the flat path, ``edges`` (hi_e, lo_e, hi_wall, lo_wall).
    """
    hi_e, lo_e, hi_wall, lo_wall = edges
    big, flat = path.shape[1] - 1, path.reshape(-1)
    j = (u[:, :2] * (big - 1)).astype(np.int64)
    j += 1
    j_hi, j_lo = j[:, 0], np.where(j[:, 1] == j[:, 0], j[:, 0] % (big - 1) + 1, j[:, 1])
    i_hi = path.argmax(axis=1)
    # max(path - edge) is max(path) - edge exactly: rounding is monotone
    short = flat[row0 + i_hi]  # path[rows, i_hi] - hi_e <= 1e-9, off walls
    short -= hi_e
    need = ((short <= 1e-9) > hi_wall).nonzero()[0]
    if need.size:
        col = j_hi[need]
        flat[row0[need] + col] = hi_e[need] + _KINK
        i_hi[need] = col
    i_lo = path.argmin(axis=1)
    short = flat[row0 + i_lo]  # lo_e - path[rows, i_lo] <= 1e-9, off walls
    np.subtract(lo_e, short, out=short)
    need = ((short <= 1e-9) > lo_wall).nonzero()[0]
    if need.size:
        col = j_lo[need]
        flat[row0[need] + col] = lo_e[need] - _KINK
        i_lo[need] = col
        _research(path, i_hi, need[i_hi[need] == col], np.ndarray.argmax)
    return i_hi, i_lo


def _research(path: np.ndarray, where: np.ndarray, rows: np.ndarray, arg: Callable[..., np.ndarray]) -> None:
    """Search again the rows whose extreme was just moved, in place."""
    if rows.size:
        where[rows] = arg(path[rows], axis=1)


def _extremes(path: np.ndarray, row0: np.ndarray, on_boundary: np.ndarray, i_hi: np.ndarray, i_lo: np.ndarray) -> None:
    """Peak and bottom moved off child boundaries, in place.

    An extreme on a boundary would hand two children the parent's extreme as open/close:
    it moves one step inside a child (never onto the other extreme).
    """
    flat = path.reshape(-1)
    on = on_boundary[i_hi].nonzero()[0]
    if on.size:
        i_hi[on] += 1
        at = row0[on] + i_hi[on]
        flat[at] = flat[at - 1] + _NUDGE
        _research(path, i_lo, on[i_lo[on] == i_hi[on]], np.ndarray.argmin)  # raising a point moves only a bottom on it
    on = on_boundary[i_lo].nonzero()[0]
    if on.size:
        low = i_lo[on]
        move = np.where(low + 1 == i_hi[on], low - 1, low + 1)
        start = row0[on]
        flat[start + move] = flat[start + low] - _NUDGE
        i_lo[on] = move


def _bend(path: np.ndarray, row0: np.ndarray, i_hi: np.ndarray, i_lo: np.ndarray, hi_e: np.ndarray, lo_e: np.ndarray) -> None:
    """Stretch the parts above/below [open, close] so the path's max and min land on 1 and 0, in place."""
    flat = path.reshape(-1)
    top, bot = flat[row0 + i_hi], flat[row0 + i_lo]
    he, le = hi_e[:, None], lo_e[:, None]
    top -= hi_e  # up = (1 - hi_e) / max(top - hi_e, 1e-12)
    np.maximum(top, 1e-12, out=top)
    up = 1.0 - hi_e
    up /= top
    np.subtract(lo_e, bot, out=bot)  # down = lo_e / max(lo_e - bot, 1e-12)
    np.maximum(bot, 1e-12, out=bot)
    down = lo_e / bot
    is_above, is_below = path > he, path < le
    above = path - he  # he + (path - he) * up
    above *= up[:, None]
    above += he
    below = le - path  # le - (le - path) * down
    below *= down[:, None]
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
    p, m, level = len(par.t), _SUB, _level(n)
    big = n * m
    u = uniform(keys(seed, child_step, par.t), 2 + 2 * n + 2 * (big + n))
    gz = gauss(u[:, 2 + 2 * n :])
    rng = par.h - par.l
    safe = np.where(rng > 0, rng, 1.0)  # a flat parent gets flat children, not NaN
    xo, xc = (par.o - par.l) / safe, (par.c - par.l) / safe
    path = _bridge(xo, xc, gz, big, level.grid)
    hi_e, lo_e = np.maximum(xo, xc), np.minimum(xo, xc)
    hi_wall, lo_wall = hi_e >= 1.0, lo_e <= 0.0
    _fold_walls(path, lo_wall, hi_wall)
    row0 = _row_starts(p, big + 1)
    i_hi, i_lo = _kink(path, row0, u, (hi_e, lo_e, hi_wall, lo_wall))
    _extremes(path, row0, level.on_boundary, i_hi, i_lo)
    _bend(path, row0, i_hi, i_lo, hi_e, lo_e)
    lo_p, hi_p = par.l[:, None], par.h[:, None]
    px = path  # lo_p + y * safe, clipped to [lo_p, hi_p] (prices are positive: no NaN or -0 to mind)
    px *= safe[:, None]
    px += lo_p
    np.maximum(px, lo_p, out=px)
    np.minimum(px, hi_p, out=px)
    px[:, 0], px[:, -1] = par.o, par.c
    ends = px[:, m::m]
    # m points per child miss the extremes between them; a random wick puts them back
    # (child ranges would otherwise shrink level after level): -wick, highs' then lows'
    less = np.log(u[:, 2 : 2 + 2 * n])  # (_WICK * _NOISE / sqrt(n)) * safe * -log(u)
    less *= (safe * (_WICK * _NOISE / math.sqrt(n)))[:, None]
    # saturating, so only the child that holds the path's extreme reaches the parent's
    top_k = np.maximum.reduceat(px, level.starts, axis=1)
    np.maximum(top_k, ends, out=top_k)
    bot_k = np.minimum.reduceat(px, level.starts, axis=1)
    np.minimum(bot_k, ends, out=bot_k)
    room_h = hi_p - top_k  # max(0.9 * (hi_p - top_k), 1e-300)
    room_h *= 0.9
    np.maximum(room_h, 1e-300, out=room_h)
    room_l = bot_k - lo_p
    room_l *= 0.9
    np.maximum(room_l, 1e-300, out=room_l)
    rise = np.divide(less[:, :n], room_h)  # ch = top_k + room_h * -expm1(-wick_h / room_h)
    np.expm1(rise, out=rise)
    rise *= room_h
    ch = np.subtract(top_k, rise, out=top_k)
    drop = np.divide(less[:, n:], room_l)  # cl = bot_k - room_l * -expm1(-wick_l / room_l)
    np.expm1(drop, out=drop)
    drop *= room_l
    cl = np.add(bot_k, drop, out=bot_k)
    # true up to rounding of px already; assigning makes max(child highs) == parent high exact
    kid0 = _row_starts(p, n)
    ch.reshape(-1)[kid0 + level.child_of[i_hi]] = par.h
    cl.reshape(-1)[kid0 + level.child_of[i_lo]] = par.l
    co, cc = px[:, :-m:m], ends
    ct = par.t[:, None] + _child_offsets(n, child_step)
    # volume follows the move (range), the US session and weekdays (1970-01-01 was a Thursday)
    hour = ct // 3600  # of the week: (ct // 3600 + 72) % 168
    hour += 72
    hour %= 168
    wt = ch - cl  # (0.15 + (ch - cl) / safe) * season * exp(0.3 * gz[:, big : big + n])
    wt /= safe[:, None]
    wt += 0.15
    wt *= _SEASON[hour]
    swing = gz[:, big : big + n] * 0.3
    np.exp(swing, out=swing)
    wt *= swing
    wt /= np.add.reduce(wt, axis=1, keepdims=True)  # cv = v * (wt / wt.sum(axis=1)): the same reduction
    cv = np.multiply(par.v[:, None], wt, out=wt)
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
