"""Squeeze breakout: after the Bollinger bands were at their narrowest, the close leaves the recent range."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from nodes.strategies import (
    SignalArrays,
    Strategy,
    clip01,
    columns,
    frame_of,
    rolling,
    select,
    shift,
    signal_arrays,
    trailing_count,
    zero_nan,
)

RANGE_BARS = 20
# A squeeze: band width in the lowest SQUEEZE_PCT of its last WIDTH_WINDOW values...
WIDTH_WINDOW = 100
SQUEEZE_PCT = 0.20
# ...on at least one of the SQUEEZE_RECENT candles before the breakout (the breakout itself widens the bands).
SQUEEZE_RECENT = 5
STOP_ATR = 1.5
MIN_REWARD_RISK = 1.5
_COUNT_TYPE = np.uint8 if WIDTH_WINDOW < 256 else np.int64  # holds any count of values in one window


def trailing_rank(values: np.ndarray) -> np.ndarray:
    """`rolling(WIDTH_WINDOW, min_periods=WIDTH_WINDOW // 2).rank(method="min", pct=True)` of a float array.

    Each value's rank among the non-NaN values of its trailing window, lowest tie rank
    (1 + how many are strictly smaller), as a share of those values; NaN for a NaN value
    or a window with fewer than WIDTH_WINDOW // 2 values.
    """
    padded = np.concatenate((np.full(WIDTH_WINDOW - 1, np.nan), values))
    # Row `lag` holds each candle's value `WIDTH_WINDOW - 1 - lag` candles back: the windows laid out
    # by lag, each row one contiguous slice, so the comparison and the count run along whole rows.
    # The view made by the ndarray constructor: `sliding_window_view`'s checks cost ~40 µs, half of this.
    step = padded.itemsize
    by_lag = np.ndarray((WIDTH_WINDOW, len(values)), padded.dtype, padded, 0, (step, step))
    # Counted as bytes: a window's count fits one (WIDTH_WINDOW < 256), and summing bytes skips the
    # bool-to-int64 cast of all WIDTH_WINDOW x candles comparisons. The counts are the same integers.
    smaller = np.add.reduce((by_lag < values).view(np.uint8), axis=0, dtype=_COUNT_TYPE)
    count = trailing_count(values, WIDTH_WINDOW)
    with np.errstate(divide="ignore", invalid="ignore"):
        rank = (smaller + 1) / count
    rank[np.isnan(values) | (count < WIDTH_WINDOW // 2)] = np.nan
    return rank


def recent_squeeze(rank: np.ndarray) -> np.ndarray:
    """Whether any of the SQUEEZE_RECENT candles before each one ranked a squeeze (a NaN rank is none).

    The rolling maximum of the shifted squeeze flags, > 0, read as a count of squeezes: the
    difference of two cumulative sums, in a few calls instead of a rolling window's dozen.
    """
    squeezes = np.concatenate((np.zeros(SQUEEZE_RECENT + 1, dtype=np.int64), np.cumsum(rank <= SQUEEZE_PCT)))
    return squeezes[SQUEEZE_RECENT:-1] > squeezes[: -SQUEEZE_RECENT - 1]


def signals(frame: pd.DataFrame) -> SignalArrays:
    high, low, close, atr, width = columns(frame, "high", "low", "close", "atr", "bb_width")
    # Percentile rank of each width among its own trailing window: ≤ SQUEEZE_PCT = the narrowest fifth.
    # Ties rank at their lowest, so a long run of equal widths stays a squeeze (average ranks would climb).
    rank = trailing_rank(width) if len(width) else np.empty(0)
    squeezed = recent_squeeze(rank)
    tightest = rolling(shift(rank, 1), SQUEEZE_RECENT, np.fmin, min_periods=1)
    # The range of the RANGE_BARS candles before this one (the current candle excluded).
    top = rolling(shift(high, 1), RANGE_BARS, np.fmax)
    bottom = rolling(shift(low, 1), RANGE_BARS, np.fmin)
    height, middle = top - bottom, (top + bottom) / 2
    long = squeezed & (close > top)
    short = squeezed & (close < bottom)
    direction = select([long, short], [1, -1], 0)
    # Stop: the range's midpoint or 1.5 ATR, whichever is closer to the entry.
    stop = select([long, short], [np.maximum(middle, close - STOP_ATR * atr), np.minimum(middle, close + STOP_ATR * atr)], np.nan)
    risk = np.abs(close - stop)
    # Target: the range height projected from the broken edge, and never less than MIN_REWARD_RISK.
    projected = select([long, short], [top + height, bottom - height], np.nan)
    floor = close + direction * MIN_REWARD_RISK * risk
    with np.errstate(invalid="ignore"):
        target = np.where(direction * (projected - floor) >= 0, projected, floor)
    with np.errstate(divide="ignore", invalid="ignore"):
        strength = select([long, short], [(close - top) / atr, (bottom - close) / atr], 0.0)
    tightness = clip01(1 - tightest / SQUEEZE_PCT)
    confidence = 0.4 + 0.3 * clip01(zero_nan(strength)) + 0.3 * zero_nan(tightness)
    return signal_arrays(direction, confidence, stop, target, close, frame.index)


def evaluate(frame: pd.DataFrame) -> pd.DataFrame:
    return frame_of(signals(frame))


def explain(row: pd.Series, signal: Mapping[str, float]) -> str:
    if signal["direction"] == 0:
        return (
            f"no squeeze breakout: close {row['close']:.6g}, Bollinger width {row['bb_width']:.4f} "
            f"(needs a width in the lowest {SQUEEZE_PCT:.0%} of {WIDTH_WINDOW} and a close outside the {RANGE_BARS}-candle range)"
        )
    edge = "above the highest high" if signal["direction"] > 0 else "below the lowest low"
    return (
        f"after a squeeze (Bollinger width in its lowest {SQUEEZE_PCT:.0%} of {WIDTH_WINDOW} within {SQUEEZE_RECENT} candles, "
        f"now {row['bb_width']:.4f}) the close {row['close']:.6g} broke {edge} of the last {RANGE_BARS} candles; "
        f"stop {signal['stop']:.6g}, target {signal['target']:.6g} (range height projected, at least {MIN_REWARD_RISK:g}R), ATR {row['atr']:.6g}"
    )


STRATEGY = Strategy(
    name="breakout",
    version="1.0.0",
    kind="momentum",
    regimes=("RANGING", "VOLATILE"),
    evaluate=evaluate,
    signals=signals,
    explain=explain,
)
