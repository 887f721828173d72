"""Volume analysis on candles: volume profile, Weis waves, OBV slope and divergence.

Pure functions of the candles they are given; none reads a candle after the last one, so a
frame truncated at candle t yields what was knowable at t (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import pandas_ta as ta

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
    low, high, volume = (np.asarray(a, dtype=float) for a in (low, high, volume))
    bottom, top = float(low.min()), float(high.max())
    edges = np.linspace(bottom, top, bins + 1)
    span = high - low
    flat = span <= 0
    overlap = np.clip(np.minimum(high[:, None], edges[None, 1:]) - np.maximum(low[:, None], edges[None, :-1]), 0.0, None)
    share = np.divide(overlap, span[:, None], out=np.zeros_like(overlap), where=~flat[:, None])
    hist = (share * volume[:, None]).sum(axis=0)
    if flat.any() and top > bottom:
        where = np.clip(np.searchsorted(edges, low[flat], side="right") - 1, 0, bins - 1)
        np.add.at(hist, where, volume[flat])
    elif flat.any():  # the whole window sits at one price: one bin holds everything
        hist[0] += volume[flat].sum()
    return edges, hist


def value_area(edges: np.ndarray, hist: np.ndarray, share: float = VALUE_AREA_SHARE) -> Profile:
    """Point of control and the value area grown bin by bin from it.

    POC: the bin with the most volume (ties: the one nearest the range's middle, then the lower),
    reported at its mid price. The value area starts at the POC bin and adds, one bin at a time,
    the neighbouring bin (just above or just below the area) holding more volume; on a tie both are
    added. It stops once it holds ``share`` of the total. VAL/VAH are the outer edges of the area,
    so VAL <= POC <= VAH always.
    """
    bins = len(hist)
    mids = (edges[:-1] + edges[1:]) / 2
    if edges[-1] <= edges[0]:  # a window at one price: everything is the POC
        price = float(edges[0])
        return Profile(price, price, price)
    best = np.flatnonzero(hist == hist.max())
    centre = (edges[0] + edges[-1]) / 2
    poc = int(best[np.argmin(np.abs(mids[best] - centre))])  # argmin takes the first (lower) on a tie
    target = share * hist.sum()
    lo = hi = poc
    held = hist[poc]
    while held < target:
        can_up, can_down = hi < bins - 1, lo > 0
        up = can_up and (not can_down or hist[hi + 1] >= hist[lo - 1])
        down = can_down and (not can_up or hist[lo - 1] >= hist[hi + 1])
        if not (up or down):  # both sides exhausted (or NaN volumes): nothing more to add
            break
        if up:
            hi += 1
            held += hist[hi]
        if down:
            lo -= 1
            held += hist[lo]
    return Profile(float(mids[poc]), float(edges[lo]), float(edges[hi + 1]))


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


def weis_waves(close: np.ndarray, volume: np.ndarray, threshold: np.ndarray) -> list[Wave]:
    """Waves of closes between turning points confirmed by a retracement of more than ``threshold``.

    Candle 0 is the anchor. The first wave's direction is set by the first close that moves more
    than the threshold away from close[0]. In an UP wave the extreme is the highest close so far;
    when a close falls more than threshold[i] (at that candle: no later value is used) below it,
    the UP wave ends at the extreme and a DOWN wave begins right after it (mirror for DOWN).
    A wave covers candles (previous turn, its turn]: volume is the sum over them, price change is
    close[turn] - close[previous turn]. The last wave runs to the newest candle and is provisional:
    later candles may extend it, but the waves before it never change. NaN thresholds (ATR warm-up)
    confirm nothing.
    """
    close, volume, threshold = (np.asarray(a, dtype=float) for a in (close, volume, threshold))
    waves: list[Wave] = []
    direction = 0  # +1 up, -1 down, 0 not yet known
    turn = 0  # the previous turning candle (the anchor at first)
    extreme = 0
    for i in range(1, len(close)):
        step = threshold[i]
        if direction == 0:
            if abs(close[i] - close[0]) > step:
                direction, extreme = (1 if close[i] > close[0] else -1), i
            continue
        if direction * (close[i] - close[extreme]) >= 0:
            extreme = i
        elif direction * (close[extreme] - close[i]) > step:
            waves.append(_wave(direction, turn, extreme, close, volume))
            direction, turn, extreme = -direction, extreme, i
    if direction != 0:
        waves.append(_wave(direction, turn, len(close) - 1, close, volume))
    return waves


def _wave(direction: int, turn: int, end: int, close: np.ndarray, volume: np.ndarray) -> Wave:
    return Wave(
        direction="UP" if direction > 0 else "DOWN",
        first=turn + 1,
        last=end,
        volume=float(volume[turn + 1 : end + 1].sum()),
        price_change=float(close[end] - close[turn]),
    )


def obv(close: pd.Series, volume: pd.Series) -> pd.Series:
    """On-balance volume from pandas-ta (TA-Lib convention: starts at volume[0])."""
    values = ta.obv(close, volume)
    if values is None:  # pandas-ta answers None for too short a series
        return pd.Series(np.nan, index=close.index)
    return values


def obv_slope(close: pd.Series, volume: pd.Series, window: int = OBV_WINDOW) -> float:
    """OBV change over the last ``window`` candles, in units of their average volume.

    Equals the sum of the window's signed volumes divided by their mean volume, so it lies in
    [-window, +window]: +window means every candle closed up. Uses the last min(window, n-1) steps.
    """
    values = obv(close, volume).to_numpy(float)
    steps = min(window, len(values) - 1)
    if steps < 1:
        return 0.0
    mean_volume = float(volume.iloc[-steps:].mean())
    if not np.isfinite(mean_volume) or mean_volume <= 0:
        return 0.0
    return float((values[-1] - values[-1 - steps]) / mean_volume)


def obv_divergence(close: pd.Series, volume: pd.Series, window: int = OBV_WINDOW) -> Divergence | None:
    """Price and OBV disagreeing over the last ``window`` candles, split into two halves.

    With A = the older half and B = the newer half of the window (by closes and OBV values):
    BULLISH when min close(B) < min close(A) (price makes a lower low) while min OBV(B) > min OBV(A)
    (OBV makes a higher low): selling pressure is drying up. BEARISH is the mirror: max close(B) >
    max close(A) while max OBV(B) < max OBV(A). Both at once (an expanding range) or fewer than
    ``window`` candles: None.
    """
    if len(close) < window or window < 4:
        return None
    prices = close.to_numpy(float)[-window:]
    flows = obv(close, volume).to_numpy(float)[-window:]
    half = window // 2
    older_p, newer_p, older_o, newer_o = prices[:half], prices[half:], flows[:half], flows[half:]
    if np.isnan(flows).any():
        return None
    bullish = newer_p.min() < older_p.min() and newer_o.min() > older_o.min()
    bearish = newer_p.max() > older_p.max() and newer_o.max() < older_o.max()
    if bullish == bearish:
        return None
    return "BULLISH" if bullish else "BEARISH"
