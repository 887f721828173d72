"""Swing pivots and level clustering: the hand-written analysis no maintained library offers.

A pivot at candle t is confirmed only `width` candles later; the newest
`width` candles of a frame can never be pivots yet, so a frame truncated at
any candle yields exactly the pivots known at that candle (no look-ahead).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Pivot:
    position: int  # row of the pivot candle
    time: pd.Timestamp
    price: float
    kind: str  # "high" or "low"


def swing_pivots(high: pd.Series, low: pd.Series, width: int = 2) -> list[Pivot]:
    """Candles whose high (low) is strictly above (below) the `width` candles on each side."""
    return pivots_of(high.to_numpy(float), low.to_numpy(float), high.index, width)


def extremes(values: np.ndarray, width: int, beats: np.ufunc) -> np.ndarray:
    """Rows i (ascending) where beats(values[i], values[j]) for every j within `width` rows on both sides.

    A NaN on either side of a comparison is never beaten, so a NaN candle is no pivot and hides none.
    """
    n = len(values)
    combine = _BEATEN_BY_ALL_OF.get(beats)
    if combine is not None and width >= 1 and n >= 2 * width + 1:
        return np.flatnonzero(_beats_neighbours(values, width, beats, combine)) + width
    centre = values[width : n - width]
    found = np.ones(len(centre), dtype=bool)
    for k in range(1, width + 1):  # comparisons against each neighbour: no windows copied
        found &= beats(centre, values[width - k : n - width - k])
        found &= beats(centre, values[width + k : n - width + k])
    return np.flatnonzero(found) + width


# The running extreme that a value must beat to beat every value it covers.
_BEATEN_BY_ALL_OF: dict[np.ufunc, np.ufunc] = {np.greater: np.maximum, np.less: np.minimum}


def _beats_neighbours(values: np.ndarray, width: int, beats: np.ufunc, combine: np.ufunc) -> np.ndarray:
    """For rows width..n-width-1 (width >= 1, n >= 2 * width + 1): whether the row beats its `width` neighbours
    on each side. Beating every neighbour = beating the max (min) of each side's: max/min are exact and carry
    a NaN through, so the outcomes are the pairwise comparisons', in fewer passes."""
    n = len(values)
    reach = values  # reach[i]: the extreme of values[i : i + width]
    for k in range(1, width):
        reach = combine(reach[:-1], values[k:])
    centre = values[width : n - width]
    found = beats(centre, reach[: n - 2 * width])  # the `width` rows before each centre
    found &= beats(centre, reach[width + 1 :])  # and the `width` rows after it
    return found


@dataclass(frozen=True)
class PivotRows:
    """`swing_pivots` as arrays, for callers that need no times: building those is most of the cost."""

    positions: np.ndarray  # rows, ascending; a swing high before a swing low on the same candle
    is_high: np.ndarray
    prices: np.ndarray  # the high of a swing high, the low of a swing low


def pivot_rows(highs: np.ndarray, lows: np.ndarray, width: int = 2, since: int = 0) -> PivotRows:
    """The swing pivots (see `swing_pivots`) at rows >= `since`, as arrays."""
    if len(highs) < 2 * width + 1:
        return PivotRows(np.empty(0, dtype=int), np.empty(0, dtype=bool), np.empty(0))
    if width >= 1 and _paired(highs, lows):
        return _pivot_rows_paired(highs, lows, width, since)
    tops, bottoms = extremes(highs, width, np.greater), extremes(lows, width, np.less)
    if since > 0:  # most callers want every pivot: skip two masked copies
        tops, bottoms = tops[tops >= since], bottoms[bottoms >= since]
    positions = np.concatenate((tops, bottoms))
    order = np.argsort(positions, kind="stable")  # stable: on a tie the high (listed first) stays first
    positions, is_high = positions[order], order < len(tops)
    return PivotRows(positions, is_high, np.where(is_high, highs[positions], lows[positions]))


def _paired(highs: np.ndarray, lows: np.ndarray) -> bool:
    """Whether `_pivot_rows_paired` applies: float64 columns of one length (negating a low is then exact)."""
    return highs.dtype == lows.dtype == np.float64 and highs.ndim == lows.ndim == 1 and len(highs) == len(lows)


def _pivot_rows_paired(highs: np.ndarray, lows: np.ndarray, width: int, since: int) -> PivotRows:
    """`pivot_rows` with the swing lows found as the swing highs of -low, side by side with the highs.

    A low below its neighbours is a -low above theirs (negation is exact, NaN beats and is beaten by
    nothing either way), so one set of `_beats_neighbours` calls finds both kinds. Its (candle, kind)
    rows, read in order, are the pivots in pivot_rows' order, a high before a low on one candle: no sort.
    """
    n = len(highs)
    both = np.empty((n, 2))
    both[:, 0] = highs
    np.negative(lows, out=both[:, 1])
    reach = both  # reach[i]: the max of rows i .. i + width - 1
    for k in range(1, width):
        reach = np.maximum(reach[:-1], both[k:])
    centre = both[width : n - width]
    found = centre > reach[: n - 2 * width]  # the `width` rows before each centre
    found &= centre > reach[width + 1 :]  # and the `width` rows after it
    first = max(since - width, 0)  # found's row of candle `since`: pivots before it are not wanted
    hits = np.flatnonzero(found[first:])
    positions, is_high = hits // 2 + (width + first), hits % 2 == 0
    return PivotRows(positions, is_high, np.where(is_high, highs[positions], lows[positions]))


def pivots_of(highs: np.ndarray, lows: np.ndarray, index: pd.Index, width: int = 2) -> list[Pivot]:
    """`swing_pivots` on float arrays and the frame's index."""
    rows = pivot_rows(highs, lows, width)
    # One boxing of all the pivot times: indexing the index once per pivot cost ~10 us each.
    times = list(index[rows.positions])
    kinds = ["high" if h else "low" for h in rows.is_high.tolist()]
    return [Pivot(*fields) for fields in zip(rows.positions.tolist(), times, rows.prices.tolist(), kinds, strict=True)]


def left_prominence(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, pivots: PivotRows, lookback: int
) -> np.ndarray:
    """Each pivot's move into it in mean true ranges: the significance `tools.avwap.pivot_significance` defines.

    The lookback + 1 candles of every pivot at once instead of a loop over pivots. Candles before the
    frame's first are padding that never counts: a high of -inf is never at a swing high's level nor a
    swing low's maximum, a low of +inf the mirror.

    A swing low is scored as the swing high of the negated prices (-low its level, -high what it
    moved through), so both kinds take one set of numpy calls: negation is exact and mirrors every
    comparison, min and max, and max(h) - l = (-l) - min(-h) exactly, except for the sign of a zero
    or a NaN move; those (degenerate) frames take `_left_prominence_by_kind`, whose numbers these are.
    """
    positions, n = pivots.positions, len(high)
    if lookback < 1 or not _paired(high, low) or (len(positions) and not (positions.min() >= 0 and positions.max() < n)):
        return _left_prominence_by_kind(high, low, close, pivots, lookback)  # its errors, casts and index wrapping
    # Rows of one flat table, each padded in front by `lookback` values that never count:
    # 0: high and 1: -low, the levels (pad -inf); 2: low and 3: -high, what the move ran through (pad +inf).
    width = lookback + n
    table = np.empty((4, width))
    table[:2, :lookback], table[2:, :lookback] = -np.inf, np.inf
    table[0, lookback:], table[2, lookback:] = high, low
    np.negative(low, out=table[1, lookback:])
    np.negative(high, out=table[3, lookback:])
    # One column per pivot, its candles p - lookback .. p down the rows: the comparisons, the running
    # "or" and the min below then run along contiguous rows, across all pivots at once.
    cells = np.arange(lookback + 1)[:, None] + (positions + np.where(pivots.is_high, 0, width))
    flat = table.reshape(-1)
    levels, through = flat[cells], flat[cells + 2 * width]
    # Candles at or beyond the pivot's level (q), the pivot itself left out; a candle counts in the
    # move when none comes at or after it: after the latest q, or all when there is none.
    at_level = levels >= levels[lookback]
    at_level[lookback] = False
    blocked = np.logical_or.accumulate(at_level[::-1], axis=0)[::-1]
    move = levels[lookback] - np.where(blocked, np.inf, through).min(axis=0)
    if not (np.abs(move) > 0.0).all():  # a zero or NaN move
        return _left_prominence_by_kind(high, low, close, pivots, lookback)
    ranges = true_range(high, low, close)
    if (positions >= lookback).all():  # every window inside the frame: `_mean_true_range`'s sums, without its masks
        # One row per pivot here: a row's sum adds its values in the order a 1-d sum of them does.
        unit = np.add.reduce(ranges[(positions - lookback)[:, None] + np.arange(lookback + 1)], axis=1) / (lookback + 1)
    else:
        unit = _mean_true_range(ranges, positions, lookback)
    return np.divide(move, unit, out=np.zeros_like(move), where=unit > 0)  # 0 where the unit is 0 (or NaN)


def _left_prominence_by_kind(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, pivots: PivotRows, lookback: int
) -> np.ndarray:
    """`left_prominence` with each kind's own comparisons, min and max: the definition's numbers."""
    span = np.arange(lookback + 1)
    rows = pivots.positions[:, None] + span  # columns: candles p - lookback .. p, in the padded arrays
    highs = np.concatenate((np.full(lookback, -np.inf), high))[rows]
    lows = np.concatenate((np.full(lookback, np.inf), low))[rows]
    pivot_high, pivot_low, is_high = highs[:, -1:], lows[:, -1:], pivots.is_high
    # The latest earlier candle at the pivot's level (q); the move is measured from the candle after it.
    at_level = np.where(is_high[:, None], highs[:, :-1] >= pivot_high, lows[:, :-1] <= pivot_low)
    latest = lookback - 1 - np.argmax(at_level[:, ::-1], axis=1)
    counted = span >= np.where(at_level.any(axis=1), latest + 1, 0)[:, None]
    move = np.where(
        is_high,
        pivot_high[:, 0] - np.where(counted, lows, np.inf).min(axis=1),
        np.where(counted, highs, -np.inf).max(axis=1) - pivot_low[:, 0],
    )
    unit = _mean_true_range(true_range(high, low, close), pivots.positions, lookback)
    return np.divide(move, unit, out=np.zeros_like(move), where=unit > 0)  # 0 where the unit is 0 (or NaN)


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    previous = np.concatenate(([np.nan], close[:-1]))
    # The first candle has no previous close: its range is high - low (fmax/fmin skip the NaN).
    return np.fmax(high, previous) - np.fmin(low, previous)


def _mean_true_range(ranges: np.ndarray, positions: np.ndarray, lookback: int) -> np.ndarray:
    """Mean true range of rows max(0, p - lookback) .. p for each pivot p.

    Full windows are averaged as one (pivots, lookback + 1) array: numpy sums each row exactly as it
    sums a 1-d slice, so the means (and the ranking they feed) are bit for bit those of a loop.
    """
    full = positions >= lookback
    unit = np.empty(len(positions))
    # np.mean(axis=1) is this very sum and division; `positions[full][:, None]`, not `positions[full, None]`:
    # mixing a mask and a new axis in one index takes numpy's slow general path.
    windows = ranges[positions[full][:, None] - lookback + np.arange(lookback + 1)]
    unit[full] = np.add.reduce(windows, axis=1) / (lookback + 1)
    # Only pivots within `lookback` candles of the frame's start. np.mean of a 1-d float64 slice is
    # np.add.reduce of it divided by its length: the same float, without ~4 µs of np.mean's
    # Python-level bookkeeping per call.
    for i, position in zip(np.flatnonzero(~full).tolist(), positions[~full].tolist(), strict=True):
        unit[i] = np.add.reduce(ranges[: position + 1]) / (position + 1)
    return unit


def label_sequence(pivots: list[Pivot]) -> list[str]:
    """HH/LH/EH for each swing high against the previous one, HL/LL/EL for lows (E = equal: no direction)."""
    return labels_of([p.kind == "high" for p in pivots], [p.price for p in pivots])


def labels_of(is_high: list[bool], prices: list[float]) -> list[str]:
    """`label_sequence` of pivots given as their kinds (True = swing high) and prices."""
    labels: list[str] = []
    previous: dict[bool, float] = {}
    for high, price in zip(is_high, prices, strict=True):
        before = previous.get(high)
        if before is not None:
            if price == before:
                labels.append("EH" if high else "EL")
            elif high:
                labels.append("HH" if price > before else "LH")
            else:
                labels.append("HL" if price > before else "LL")
        previous[high] = price
    return labels


@dataclass(frozen=True)
class Cluster:
    price: float
    touches: int
    last_position: int


def cluster_prices(prices: list[float], positions: list[int], tolerance: float) -> list[Cluster]:
    """Greedy single-linkage clustering of nearby prices; each cluster at its mean price."""
    if not prices or tolerance <= 0:
        return []
    order = np.argsort(prices)
    clusters: list[list[int]] = [[int(order[0])]]
    for index in order[1:]:
        if prices[index] - prices[clusters[-1][-1]] <= tolerance:
            clusters[-1].append(int(index))
        else:
            clusters.append([int(index)])
    return [
        Cluster(
            price=float(np.mean([prices[i] for i in members])),
            touches=len(members),
            last_position=max(positions[i] for i in members),
        )
        for members in clusters
    ]
