"""Swing failure: a wick takes out the last confirmed swing high (low) and the close falls back inside."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from nodes.strategies import SignalArrays, Strategy, clip01, columns, frame_of, select, shift, signal_arrays, zero_nan
from tools.pivots import PivotRows, pivot_rows

# Three candles each side: width-2 pivots are every minor wiggle, and their sweeps are noise.
PIVOT_WIDTH = 3
# A sweep in a strong trend is usually continuation, not failure: fade only below this ADX.
MAX_ADX = 25.0
STOP_PAD_ATR = 0.1
REWARD_RISK = 2.0


def _swing_levels(pivots: PivotRows, price: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Last swing of `kind` known before each candle, and whether no candle has traded through it since.

    A pivot at row p is confirmed at row p + PIVOT_WIDTH; the level is used from the candle after that.
    `price` is the high for swing highs, minus the low for swing lows (so "through" is always "above").
    """
    n = len(price)
    confirmed = np.full(n, np.nan)
    mine = pivots.is_high if kind == "high" else ~pivots.is_high
    confirmed[pivots.positions[mine] + PIVOT_WIDTH] = pivots.prices[mine]
    at = np.flatnonzero(~np.isnan(confirmed))
    # The last confirmed level at each row (a forward fill), known from the row after its confirmation.
    filled = np.full(n, np.nan)
    if len(at):
        filled[at[0] :] = confirmed[at[np.searchsorted(at, np.arange(at[0], n), side="right") - 1]]
    known = shift(filled, 1)
    # Segments start at each confirmation's next row; `at` is ascending and unique, so these starts are too.
    # The level is fresh while no price of its segment before this candle went through it (a NaN price
    # goes through nothing): a count of those prices, not their running maximum, which needs a sort.
    starts = np.concatenate(([0], at[at + 1 < n] + 1))
    level = known if kind == "high" else -known
    through = price > level
    before = np.cumsum(through) - through  # prices through the level before each candle, from row 0
    segment_start = np.zeros(n, dtype=np.intp)
    segment_start[starts] = starts
    np.maximum.accumulate(segment_start, out=segment_start)
    fresh = before == before[segment_start]
    # The running maximum this replaces was a `groupby.cummax`, NaN on a NaN price: the candle after one
    # found no maximum to compare, so it counted as fresh.
    fresh[1:] |= np.isnan(price[:-1])
    return known, fresh & ~np.isnan(known)


def signals(frame: pd.DataFrame) -> SignalArrays:
    high, low, close, atr, adx = columns(frame, "high", "low", "close", "atr", "adx")
    # Pivot rows as arrays: the Pivot objects (and their times) of `swing_pivots` were a third of this strategy.
    pivots = pivot_rows(high, low, PIVOT_WIDTH)
    swing_high, fresh_high = _swing_levels(pivots, high, "high")
    swing_low, fresh_low = _swing_levels(pivots, -low, "low")
    calm = adx < MAX_ADX
    short = calm & fresh_high & (high > swing_high) & (close < swing_high)
    long = calm & fresh_low & (low < swing_low) & (close > swing_low)
    direction = select([long, short], [1, -1], 0)
    stop = select([long, short], [low - STOP_PAD_ATR * atr, high + STOP_PAD_ATR * atr], np.nan)
    risk = np.abs(close - stop)
    # Target the opposite swing when it is at least 1R away on the winning side, else 2R.
    opposite = select([long, short], [swing_high, swing_low], np.nan)
    reward = direction * (opposite - close)
    with np.errstate(invalid="ignore"):
        target = np.where(~(reward >= risk), close + direction * REWARD_RISK * risk, opposite)
    span = np.where(high > low, high - low, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        rejection = select([long, short], [(close - low) / span, (high - close) / span], 0.0)
    calmness = clip01((MAX_ADX - adx) / 15)
    confidence = 0.4 + 0.3 * clip01(zero_nan(rejection)) + 0.3 * zero_nan(calmness)
    return signal_arrays(direction, confidence, stop, target, close, frame.index)


def evaluate(frame: pd.DataFrame) -> pd.DataFrame:
    return frame_of(signals(frame))


def explain(row: pd.Series, signal: Mapping[str, float]) -> str:
    if signal["direction"] == 0:
        return (
            f"no swing failure: high {row['high']:.6g} / low {row['low']:.6g}, close {row['close']:.6g}, "
            f"ADX {row['adx']:.1f} (fades only below {MAX_ADX:.0f})"
        )
    if signal["direction"] < 0:
        took, back = f"high {row['high']:.6g} swept the last confirmed swing high", "below"
    else:
        took, back = f"low {row['low']:.6g} swept the last confirmed swing low", "above"
    return (
        f"{took} but the candle closed back {back} it at {row['close']:.6g}, ADX {row['adx']:.1f} < {MAX_ADX:.0f}; "
        f"stop {signal['stop']:.6g} beyond the wick, target {signal['target']:.6g}"
    )


STRATEGY = Strategy(
    name="sfp",
    version="1.0.0",
    kind="oscillator",
    regimes=("RANGING", "VOLATILE"),
    evaluate=evaluate,
    signals=signals,
    explain=explain,
)
