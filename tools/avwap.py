"""Anchored VWAPs from the most significant recent swings, and a Gaussian-process projection of each.

Everything here is a pure function of a candle frame (columns high, low,
close, volume; any index). Nothing reads a candle after the one it reports
on: a VWAP is a running sum, and an anchor is a pivot that `tools.pivots`
has already confirmed, scored only from candles up to the pivot itself.
The projection lives in `tools.avwap_fit` (the fit) and `tools.avwap_projection` (the batch); their public names are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, tzinfo
from functools import cached_property, lru_cache
from itertools import chain, pairwise
from typing import Literal

import numpy as np
import pandas as pd

from tools.avwap_fit import (  # noqa: F401  # re-exported: the projection's home before it had its own module
    ALPHA,
    HORIZONS,
    KERNEL_FORM,
    LENGTH_SCALES,
    MIN_POINTS,
    NOISE_RATIOS,
    SIGMA_0,
    TREND_RATIOS,
    WINDOW,
    Z95,
    Hyper,
    Targets,
    _inputs,
    _max_likelihood,
    posterior,
)
from tools.avwap_projection import (  # noqa: F401  # re-exported, as above
    Prepared,
    Projection,
    finish_projections,
    one_blas_thread,
    prepare_projections,
    project_vwap,
    project_vwaps,
)
from tools.indicators import column_arrays
from tools.pivots import PivotRows, left_prominence, pivot_rows

PIVOT_WIDTH = 3  # a pivot needs 3 candles on each side, so it is confirmed 3 candles later
LOOKBACK = 20  # candles before a pivot over which the move into it is measured (at most)
RECENT = 120  # only pivots among the newest RECENT candles are candidates
PER_KIND = 2  # anchors kept per kind: 2 swing highs and 2 swing lows

AnchorKind = Literal["swing_high", "swing_low"]


@dataclass(frozen=True)
class Anchor:
    position: int  # row of the pivot candle
    time: pd.Timestamp
    price: float  # the pivot's high (swing_high) or low (swing_low)
    kind: AnchorKind
    significance: float  # see `pivot_significance`


@dataclass(frozen=True)
class Candles:
    """The columns anchors and VWAPs read, taken out once: pandas access costs more than the maths."""

    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    index: pd.Index

    @classmethod
    def of(cls, frame: pd.DataFrame) -> Candles:
        return cls(*column_arrays(frame, "high", "low", "close", "volume"), frame.index)

    def vwap(self, anchor_position: int) -> np.ndarray:
        """See `anchored_vwap`."""
        n = len(self.close)
        if not 0 <= anchor_position < n:
            raise ValueError(f"anchor position {anchor_position} outside a frame of {n} candles")
        out = np.full(n, np.nan)
        # Running sums: the value at t never depends on a candle after t.
        price_volume = np.cumsum(self.typical_volume[anchor_position:])
        cum_volume = np.cumsum(self.volume[anchor_position:])
        np.divide(price_volume, cum_volume, out=out[anchor_position:], where=cum_volume > 0)
        return out

    def vwaps(self, anchor_positions: Sequence[int]) -> np.ndarray:
        """`vwap` of each anchor position, as the rows of one array: one set of numpy calls per frame, not per anchor."""
        n = len(self.close)
        for position in anchor_positions:
            if not 0 <= position < n:
                raise ValueError(f"anchor position {position} outside a frame of {n} candles")
        positions = np.asarray(anchor_positions, dtype=np.intp).reshape(-1, 1)
        # Row i: the candles from anchor i on, those before it -0.0, the one number that leaves any sum it
        # joins as it was (x + -0.0 == x, even for x = +0.0): each running sum is the one `vwap` starts at its anchor.
        after = np.arange(n) >= positions
        price_volume = np.where(after, self.typical_volume, -0.0).cumsum(axis=1)
        cum_volume = np.where(after, self.volume, -0.0).cumsum(axis=1)
        out = np.full((len(positions), n), np.nan)
        np.divide(price_volume, cum_volume, out=out, where=cum_volume > 0)  # -0.0 before the anchor: NaN there
        return out

    @cached_property
    def typical_volume(self) -> np.ndarray:
        """Typical price (high + low + close) / 3 times volume, per candle: shared by every anchor."""
        return (self.high + self.low + self.close) / 3.0 * self.volume


def vwaps_each(frames: Sequence[Candles], anchor_positions: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """`Candles.vwaps` of each frame's anchor positions; frames of one length in one set of numpy calls
    (each row's running sums are still that row's alone: a cumsum runs along its row)."""
    length = len(frames[0].close) if frames else 0
    if len(frames) < 2 or any(len(candles.close) != length for candles in frames):
        return [candles.vwaps(positions) for candles, positions in zip(frames, anchor_positions, strict=True)]
    for positions in anchor_positions:  # the first bad position in frame order: the error a loop of `vwaps` meets
        for position in positions:
            if not 0 <= position < length:
                raise ValueError(f"anchor position {position} outside a frame of {length} candles")
    counts = [len(positions) for positions in anchor_positions]
    starts = np.fromiter(chain.from_iterable(anchor_positions), dtype=np.intp, count=sum(counts)).reshape(-1, 1)
    owner = np.repeat(np.arange(len(frames)), counts)
    # Every row is NaN before the first anchor (a -0.0 sum): the sums start there. A cumsum adds in
    # order, and the -0.0 before a row's anchor leaves the sum at it as it was, so each starts as alone.
    first = int(starts.min()) if len(starts) else length
    columns = [(candles.high, candles.low, candles.close, candles.volume) for candles in frames]
    if all(column.dtype == np.float64 for each in columns for column in each):
        # Typical volume of the stacked columns from `first` on: elementwise, each candle's own number.
        high, low, close, volume = (np.array([each[k][first:] for each in columns]) for k in range(4))
        typical_volume, volume = ((high + low + close) / 3.0 * volume)[owner], volume[owner]
    else:  # each frame's dtype promoted only after its own arithmetic, as `vwaps` does it
        typical_volume = np.array([candles.typical_volume[first:] for candles in frames])[owner]
        volume = np.array([candles.volume[first:] for candles in frames])[owner]
    after = np.arange(first, length) >= starts  # as `vwaps`: -0.0 before each row's anchor leaves its sums as they were
    price_volume = np.where(after, typical_volume, -0.0).cumsum(axis=1)
    cum_volume = np.where(after, volume, -0.0).cumsum(axis=1)
    out = np.full((len(starts), length), np.nan)
    np.divide(price_volume, cum_volume, out=out[:, first:], where=cum_volume > 0)
    return np.split(out, np.cumsum(counts)[:-1])


def anchored_vwap(frame: pd.DataFrame, anchor_position: int) -> np.ndarray:
    """VWAP from the anchor candle onward, NaN before it.

    vwap[t] = sum(tp[i] * volume[i]) / sum(volume[i]) over anchor <= i <= t,
    with typical price tp = (high + low + close) / 3. While no volume has
    traded since the anchor the value is undefined and stays NaN.
    """
    return Candles.of(frame).vwap(anchor_position)


def pivot_significance(frame: pd.DataFrame, width: int = PIVOT_WIDTH, lookback: int = LOOKBACK) -> list[Anchor]:
    """Every confirmed swing pivot of the frame, scored by the move that built it (its left prominence).

    For a swing high at row p: let q be the latest row in [p - lookback, p)
    whose high is >= high[p] (price was last at this level there), or
    p - lookback (clipped at 0) if there is none; the move is
    high[p] - min(low[q+1 .. p]) (from p - lookback itself when there is no q).
    A swing low mirrors it: q is the latest row with low <= low[p] and the move
    is max(high[q+1 .. p]) - low[p]. The significance is that move divided by the
    mean true range of rows max(0, p - lookback) .. p (0 if that is 0): how many
    average candles price travelled to reach a level it had not seen since q.
    A minor pullback just after a big swing therefore scores small, not the big
    swing's size. No candle after p is used, so a score never changes once the
    pivot is confirmed (at p + width).
    """
    candles = Candles.of(frame)
    rows = pivot_rows(candles.high, candles.low, width)
    scores = left_prominence(candles.high, candles.low, candles.close, rows, lookback)
    return _anchors(candles, rows, scores, np.arange(len(scores)))


def _anchors(candles: Candles, rows: PivotRows, scores: np.ndarray, which: np.ndarray) -> list[Anchor]:
    """Anchors of the pivots `which` (indices into `rows`), their times boxed in one call."""
    positions = rows.positions[which]
    times = _times(candles.index, positions)
    kinds: list[AnchorKind] = ["swing_high" if high else "swing_low" for high in rows.is_high[which].tolist()]
    fields = (positions.tolist(), times, rows.prices[which].tolist(), kinds, scores[which].tolist())
    return [Anchor(*anchor) for anchor in zip(*fields, strict=True)]


def _times(index: pd.Index, positions: np.ndarray) -> list:
    """The index's values at `positions`, boxed as iterating the index boxes them."""
    if isinstance(index, pd.DatetimeIndex) and index.unit == "ns":
        # A Timestamp from its nanoseconds (UTC) and the index's zone is the one the index boxes, and
        # building the handful of anchors' costs a third of slicing the index's array for them.
        tz = index.tz
        if tz is UTC or tz is None:  # a scan's symbols share their candle times: each boxed once
            return [_timestamp(value, tz) for value in index.asi8[positions].tolist()]
        return [pd.Timestamp(value, tz=tz) for value in index.asi8[positions].tolist()]
    # From the index's array: the same boxed values, without building an Index around them first.
    return list(index.array[positions])


@lru_cache(maxsize=4096)
def _timestamp(value: int, tz: tzinfo | None) -> pd.Timestamp:
    """pd.Timestamp(value, tz=tz), for a tz whose equal objects are one (UTC, None): Timestamps are immutable."""
    return pd.Timestamp(value, tz=tz)


def select_anchors(scored: list[Anchor], newest: int, recent: int = RECENT, per_kind: int = PER_KIND) -> list[Anchor]:
    """Of pivots at rows > newest - recent, the `per_kind` highest-scoring of each kind.

    Ties go to the more recent pivot. Highs come first, each kind in rank order.
    """
    chosen: list[Anchor] = []
    for kind in ("swing_high", "swing_low"):
        candidates = [a for a in scored if a.kind == kind and a.position > newest - recent]
        chosen += sorted(candidates, key=lambda a: (a.significance, a.position), reverse=True)[:per_kind]
    return chosen


def choose_anchors(
    frame: pd.DataFrame, width: int = PIVOT_WIDTH, recent: int = RECENT, per_kind: int = PER_KIND
) -> list[Anchor]:
    """The most significant recent swings: up to `per_kind` highs and lows (see `pivot_significance`)."""
    return choose_anchors_in(Candles.of(frame), width, recent, per_kind)


def choose_anchors_in(
    candles: Candles, width: int = PIVOT_WIDTH, recent: int = RECENT, per_kind: int = PER_KIND
) -> list[Anchor]:
    """`choose_anchors` on columns already taken out: only recent pivots are scored, and only the
    chosen become `Anchor`s (boxing every pivot's time cost more than choosing)."""
    newest = len(candles.close) - 1
    rows = pivot_rows(candles.high, candles.low, width, since=newest - recent + 1)
    scores = left_prominence(candles.high, candles.low, candles.close, rows, LOOKBACK)
    if np.isnan(scores).any():  # Python's sort has its own order for NaN keys: keep select_anchors' exactly
        return select_anchors(_anchors(candles, rows, scores, np.arange(len(scores))), newest, recent, per_kind)
    # As select_anchors: highs first, each kind by significance then recency, descending; one sort
    # for both kinds (a pivot's key is unique: no two of a kind share a row).
    ranked = np.lexsort((rows.positions, scores, rows.is_high))[::-1]
    highs = int(np.count_nonzero(rows.is_high))
    chosen = np.concatenate((ranked[:highs][:per_kind], ranked[highs:][:per_kind]))
    return _anchors(candles, rows, scores, chosen)



def choose_anchors_each(
    frames: Sequence[Candles], width: int = PIVOT_WIDTH, recent: int = RECENT, per_kind: int = PER_KIND
) -> list[list[Anchor]]:
    """`choose_anchors_in` of each frame's candles, the pivots of all of them found and scored together.

    The frames are joined end to end, a NaN candle after each: a NaN beats no neighbour and is beaten
    by none, so no pivot is found within `width` candles of a frame's edge, as in the frame alone, and
    the true range after it is high - low, a frame's first candle's. A pivot at least LOOKBACK candles
    into its frame is scored from its own frame's candles alone, so its number is the one the frame
    alone gives; frames with a pivot nearer their start or a NaN score take `choose_anchors_in`.
    """
    columns = [(candles.high, candles.low, candles.close) for candles in frames]
    plain = all(column.dtype == np.float64 and column.ndim == 1 for each in columns for column in each)
    if len(frames) < 2 or width < 1 or per_kind < 0 or not plain:
        return [choose_anchors_in(candles, width, recent, per_kind) for candles in frames]
    lengths = np.array([len(candles.close) for candles in frames])
    starts = np.concatenate(([0], np.cumsum(lengths + 1)[:-1]))
    gap = np.full(1, np.nan)
    high, low, close = (np.concatenate([part for each in columns for part in (each[k], gap)]) for k in range(3))
    found = pivot_rows(high, low, width)
    frame = np.searchsorted(starts, found.positions, side="right") - 1
    relative = found.positions - starts[frame]
    recent_enough = relative >= (lengths - recent)[frame]  # choose_anchors_in's `since`, frame by frame
    frame, relative = frame[recent_enough], relative[recent_enough]
    rows = PivotRows(found.positions[recent_enough], found.is_high[recent_enough], found.prices[recent_enough])
    scores = left_prominence(high, low, close, rows, LOOKBACK)
    alone = np.zeros(len(frames), dtype=bool)
    alone[frame[(relative < LOOKBACK) | np.isnan(scores)]] = True
    # choose_anchors_in's order within each frame (highs first, each kind by significance then recency,
    # descending), the frames one after another: the first `per_kind` of each (frame, kind) run are kept.
    ranked = np.lexsort((relative, scores, rows.is_high, frame))[::-1]
    run = (2 * frame + ~rows.is_high)[ranked]
    kept = np.full(len(ranked), per_kind > 0)
    if 0 < per_kind < len(run):
        kept[per_kind:] = run[per_kind:] != run[:-per_kind]  # fewer than `per_kind` places into its run
    chosen = ranked[kept]
    chosen = chosen[np.argsort(frame[chosen], kind="stable")]
    bounds = np.searchsorted(frame[chosen], np.arange(len(frames) + 1)).tolist()
    by_frame = [chosen[start:end] for start, end in pairwise(bounds)]
    local = PivotRows(relative, rows.is_high, rows.prices)
    return [
        choose_anchors_in(candles, width, recent, per_kind) if alone[i] else _anchors(candles, local, scores, which)
        for i, (candles, which) in enumerate(zip(frames, by_frame, strict=True))
    ]
