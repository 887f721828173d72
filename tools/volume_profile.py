"""Volume analysis on candles: volume profile, Weis waves, OBV slope and divergence.

Pure functions of the candles they are given; none reads a candle after the last one, so a
frame truncated at candle t yields what was knowable at t (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import talib

PROFILE_BINS = 50  # equal-width price bins over the window's low..high range
VALUE_AREA_SHARE = 0.70
WAVE_ATR_MULTIPLE = 0.5  # a wave ends when the close retraces more than this many ATRs from its extreme
OBV_WINDOW = 20

Divergence = Literal["BULLISH", "BEARISH"]


@dataclass(frozen=True)
class Profile:
    point_of_control: float
    value_area_low: float
    value_area_high: float


def volume_by_bin(
    low: np.ndarray, high: np.ndarray, volume: np.ndarray, bins: int = PROFILE_BINS
) -> tuple[np.ndarray, np.ndarray]:
    """Bin edges over [min low, max high] and the volume each bin holds.

    Each candle's volume is spread uniformly over its low..high span: a bin gets the share of the
    span it overlaps. A candle with high == low puts all its volume into the bin holding that price
    (the top bin when the price is the range's top edge).
    """
    edges, hist = volume_by_bins(*(np.asarray(a, dtype=float)[None] for a in (low, high, volume)), bins=bins)
    return edges[0], hist[0]


def volume_by_bins(
    low: np.ndarray, high: np.ndarray, volume: np.ndarray, bins: int = PROFILE_BINS
) -> tuple[np.ndarray, np.ndarray]:
    """`volume_by_bin` of equally long windows given as rows (windows, candles): edges and volumes per row.

    Each step runs once over every window, with each window's numbers exactly those of its own call.
    """
    bottom, top = low.min(axis=1), high.max(axis=1)
    edges = bin_edges(bottom, top, bins)
    span = high - low
    flat = span <= 0
    # (windows, candles, bins) overlaps, computed in place: the temporaries cost more than the arithmetic.
    share = np.minimum(high[:, :, None], edges[:, None, 1:])
    share -= np.maximum(low[:, :, None], edges[:, None, :-1])
    np.maximum(share, 0.0, out=share)
    # A flat (or inverted) candle overlaps no bin by a positive width, so its row is already 0.
    flat_rows = flat.any(axis=1)
    if flat_rows.any():
        np.divide(share, span[:, :, None], out=share, where=~flat[:, :, None])
    else:  # the same quotients; a masked divide costs twice an unmasked one
        share /= span[:, :, None]
    share *= volume[:, :, None]
    hist = share.sum(axis=1)  # over each window's candles, in order, as a sum over one window's
    for row in np.flatnonzero(flat_rows).tolist():  # rare: a window with a flat candle
        _add_flat(hist[row], edges[row], low[row, flat[row]], volume[row, flat[row]], bool(top[row] > bottom[row]))
    return edges, hist


def bin_edges(bottom: np.ndarray, top: np.ndarray, bins: int) -> np.ndarray:
    """``np.linspace(bottom[w], top[w], bins + 1)`` for each window w, as rows.

    linspace's own arithmetic (k * step + start, the last edge set to stop) on all rows in a few
    calls instead of one linspace each. linspace computes a zero step (a flat window, or a range so
    small that range / bins underflows) another way; and given several windows at once it would use
    that way for all of them: such windows get their own linspace.
    """
    step = (top - bottom) / bins if bins > 0 else np.zeros_like(bottom)
    if bins < 1 or not step.all():
        return np.stack([np.linspace(b, t, bins + 1) for b, t in zip(bottom.tolist(), top.tolist(), strict=True)])
    edges = np.arange(bins + 1.0) * step[:, None]
    edges += bottom[:, None]
    edges[:, -1] = top
    return edges


def _add_flat(hist: np.ndarray, edges: np.ndarray, price: np.ndarray, volume: np.ndarray, has_range: bool) -> None:
    """Flat candles' volume, all of each into the bin holding its price (in place)."""
    if has_range:
        where = np.clip(np.searchsorted(edges, price, side="right") - 1, 0, len(hist) - 1)
        np.add.at(hist, where, volume)
    else:  # the whole window sits at one price: one bin holds everything
        hist[0] += volume.sum()


def value_area(edges: np.ndarray, hist: np.ndarray, share: float = VALUE_AREA_SHARE) -> Profile:
    """Point of control and the value area grown bin by bin from it.

    POC: the bin with the most volume (ties: the one nearest the range's middle, then the lower),
    reported at its mid price. The value area starts at the POC bin and adds, one bin at a time,
    the neighbouring bin (just above or just below the area) holding more volume; on a tie both are
    added. It stops once it holds ``share`` of the total. VAL/VAH are the outer edges of the area,
    so VAL <= POC <= VAH always.
    """
    bins = len(hist)
    bounds = edges.tolist()  # the same doubles: scalar arithmetic on Python floats skips numpy's per-call dispatch
    if bounds[-1] <= bounds[0]:  # a window at one price: everything is the POC
        return Profile(bounds[0], bounds[0], bounds[0])
    centre = (bounds[0] + bounds[-1]) / 2
    # Mid prices of the fullest bins, in bin order: min takes the first (lower) on a tie.
    # np.maximum / np.add .reduce are what ndarray.max / .sum run, without their Python-level wrapper.
    mids = {j: (bounds[j] + bounds[j + 1]) / 2 for j in np.flatnonzero(hist == np.maximum.reduce(hist)).tolist()}
    poc = min(mids, key=lambda j: abs(mids[j] - centre))
    target = share * np.add.reduce(hist)
    volumes = hist.tolist()  # the same doubles; Python floats are ~5x cheaper to index one by one
    lo = hi = poc
    held = volumes[poc]
    while held < target:
        can_up, can_down = hi < bins - 1, lo > 0
        up = can_up and (not can_down or volumes[hi + 1] >= volumes[lo - 1])
        down = can_down and (not can_up or volumes[lo - 1] >= volumes[hi + 1])
        if not (up or down):  # both sides exhausted (or NaN volumes): nothing more to add
            break
        if up:
            hi += 1
            held += volumes[hi]
        if down:
            lo -= 1
            held += volumes[lo]
    return Profile(mids[poc], bounds[lo], bounds[hi + 1])


def profile(candles: pd.DataFrame, bins: int = PROFILE_BINS) -> Profile:
    """The volume profile of a window of candles (low, high, volume columns)."""
    edges, hist = volume_by_bin(candles["low"].to_numpy(), candles["high"].to_numpy(), candles["volume"].to_numpy(), bins)
    return value_area(edges, hist)


@dataclass(frozen=True)
class Wave:
    direction: Literal["UP", "DOWN"]
    first: int  # first candle (row) whose volume counts in this wave
    last: int  # the wave's turning candle; the newest candle for the provisional last wave
    volume: float
    price_change: float


def weis_waves(close: np.ndarray, volume: np.ndarray, threshold: np.ndarray, newest: int | None = None) -> list[Wave]:
    """Waves of closes between turning points confirmed by a retracement of more than ``threshold``.

    Candle 0 is the anchor. The first wave's direction is set by the first close that moves more
    than the threshold away from close[0]. In an UP wave the extreme is the highest close so far;
    when a close falls more than threshold[i] (at that candle: no later value is used) below it,
    the UP wave ends at the extreme and a DOWN wave begins right after it (mirror for DOWN).
    A wave covers candles (previous turn, its turn]: volume is the sum over them, price change is
    close[turn] - close[previous turn]. The last wave runs to the newest candle and is provisional:
    later candles may extend it, but the waves before it never change. NaN thresholds (ATR warm-up)
    confirm nothing. ``newest``: only the last that many waves are returned (and summed).
    """
    close, volume, threshold = (np.asarray(a, dtype=float) for a in (close, volume, threshold))
    prices = close.tolist()
    spans = _wave_spans(prices, threshold.tolist())
    if newest is not None:
        spans = spans[-newest:] if newest > 0 else []  # [-0:] would be all of them
    return [_wave(direction, turn, end, prices, volume) for direction, turn, end in spans]


def _wave_spans(close: list[float], threshold: list[float]) -> list[tuple[int, int, int]]:
    """(direction, previous turn, turn or newest candle) of every wave; see `weis_waves`.

    On Python floats, the same doubles and outcomes as the candle-by-candle loop with the direction
    as a factor: times +1 is the move itself and times -1 its exact negation, so each wave direction
    has its own loop with the sign folded into the comparisons (NaN compares false either way). Both
    loops draw from one iterator over the candles, which a `for` walks faster than indexing does.
    """
    n = len(close)
    if n > 1 and len(threshold) < n:  # as zip(close[1:], threshold[1:n], strict=True) refused it
        raise ValueError("zip() argument 2 is shorter than argument 1")
    spans: list[tuple[int, int, int]] = []
    start = close[0] if close else 0.0
    i = 1
    while i < n and not abs(close[i] - start) > threshold[i]:  # the direction is unknown until then
        i += 1
    if i >= n:
        return spans
    direction = 1 if close[i] > start else -1
    turn, extreme, peak = 0, i, close[i]  # the previous turning candle, the wave's extreme and its close
    candles = zip(range(i + 1, n), close[i + 1 : n], threshold[i + 1 : n])
    while True:
        if direction > 0:
            for k, price, limit in candles:
                move = price - peak
                if move >= 0:
                    extreme, peak = k, price
                elif -move > limit:
                    break
            else:
                break
        else:
            for k, price, limit in candles:
                move = price - peak
                if move <= 0:  # -move >= 0: a new extreme of a DOWN wave
                    extreme, peak = k, price
                elif move > limit:
                    break
            else:
                break
        # A retracement beyond the threshold confirmed the extreme as a turn.
        spans.append((direction, turn, extreme))
        direction, turn, extreme, peak = -direction, extreme, k, price
    spans.append((direction, turn, n - 1))
    return spans


def _wave(direction: int, turn: int, end: int, close: list[float], volume: np.ndarray) -> Wave:
    return Wave(
        direction="UP" if direction > 0 else "DOWN",
        first=turn + 1,
        last=end,
        volume=float(np.add.reduce(volume[turn + 1 : end + 1])),  # = .sum(), without its wrapper
        price_change=close[end] - close[turn],  # Python floats: the same difference as numpy's
    )


def obv(close: pd.Series, volume: pd.Series) -> pd.Series:
    """On-balance volume (TA-Lib convention: starts at volume[0]), on the closes' index."""
    return pd.Series(obv_values(close, volume), index=close.index)


def obv_values(close: pd.Series | np.ndarray, volume: pd.Series | np.ndarray) -> np.ndarray:
    """TA-Lib's OBV on float arrays: exactly what pandas-ta's obv returns with TA-Lib installed (it
    hands the Series to talib.OBV as floats), without its per-call pandas overhead."""
    close, volume = (np.ascontiguousarray(a, dtype=float) for a in (close, volume))
    return talib.OBV(close, volume) if len(close) else np.full(0, np.nan)


def obv_slope(
    close: pd.Series | np.ndarray, volume: pd.Series | np.ndarray, window: int = OBV_WINDOW, flows: np.ndarray | None = None
) -> float:
    """OBV change over the last ``window`` candles, in units of their average volume.

    Equals the sum of the window's signed volumes divided by their mean volume, so it lies in
    [-window, +window]: +window means every candle closed up. Uses the last min(window, n-1) steps.
    ``flows``: ``obv_values(close, volume)`` when the caller already has it.
    """
    values = obv_values(close, volume) if flows is None else flows
    steps = min(window, len(values) - 1)
    if steps < 1:
        return 0.0
    mean_volume = _skipna_mean(np.asarray(volume, dtype=float)[-steps:])
    if not np.isfinite(mean_volume) or mean_volume <= 0:
        return 0.0
    return float((values[-1] - values[-1 - steps]) / mean_volume)


def _skipna_mean(values: np.ndarray) -> float:
    """Series.mean() of these values without building a Series: NaN zeroed in place, summed, / count."""
    missing = np.isnan(values)
    count = len(values) - int(np.count_nonzero(missing))
    return float(np.where(missing, 0.0, values).sum() / count) if count > 0 else float("nan")


def obv_divergence(
    close: pd.Series | np.ndarray, volume: pd.Series | np.ndarray, window: int = OBV_WINDOW, flows: np.ndarray | None = None
) -> Divergence | None:
    """Price and OBV disagreeing over the last ``window`` candles, split into two halves.

    With A = the older half and B = the newer half of the window (by closes and OBV values):
    BULLISH when min close(B) < min close(A) (price makes a lower low) while min OBV(B) > min OBV(A)
    (OBV makes a higher low): selling pressure is drying up. BEARISH is the mirror: max close(B) >
    max close(A) while max OBV(B) < max OBV(A). Both at once (an expanding range) or fewer than
    ``window`` candles: None. ``flows``: ``obv_values(close, volume)`` when the caller has it.
    """
    if len(close) < window or window < 4:
        return None
    prices = np.asarray(close, dtype=float)[-window:]
    flows = (obv_values(close, volume) if flows is None else flows)[-window:]
    half = window // 2
    older_p, newer_p, older_o, newer_o = prices[:half], prices[half:], flows[:half], flows[half:]
    if np.isnan(flows).any():
        return None
    if np.isnan(prices).any():  # numpy's NaN-propagating min/max
        bullish = newer_p.min() < older_p.min() and newer_o.min() > older_o.min()
        bearish = newer_p.max() > older_p.max() and newer_o.max() < older_o.max()
    else:  # no NaN: Python's min/max of the same doubles pick the same values, without numpy's per-call cost
        p, o = prices.tolist(), flows.tolist()
        bullish = min(p[half:]) < min(p[:half]) and min(o[half:]) > min(o[:half])
        bearish = max(p[half:]) > max(p[:half]) and max(o[half:]) < max(o[:half])
    if bullish == bearish:
        return None
    return "BULLISH" if bullish else "BEARISH"
