"""Squeeze breakout: after the Bollinger bands were at their narrowest, the close leaves the recent range."""

from __future__ import annotations

import numpy as np
import pandas as pd

from nodes.strategies import Strategy, signal_frame

RANGE_BARS = 20
# A squeeze: band width in the lowest SQUEEZE_PCT of its last WIDTH_WINDOW values...
WIDTH_WINDOW = 100
SQUEEZE_PCT = 0.20
# ...on at least one of the SQUEEZE_RECENT candles before the breakout (the breakout itself widens the bands).
SQUEEZE_RECENT = 5
STOP_ATR = 1.5
MIN_REWARD_RISK = 1.5


def evaluate(frame: pd.DataFrame) -> pd.DataFrame:
    high, low, close, atr, width = (frame[c] for c in ("high", "low", "close", "atr", "bb_width"))
    # Percentile rank of each width among its own trailing window: ≤ SQUEEZE_PCT = the narrowest fifth.
    # Ties rank at their lowest, so a long run of equal widths stays a squeeze (average ranks would climb).
    rank = width.rolling(WIDTH_WINDOW, min_periods=WIDTH_WINDOW // 2).rank(method="min", pct=True)
    squeezed = (rank <= SQUEEZE_PCT).astype(float).shift(1).rolling(SQUEEZE_RECENT, min_periods=1).max() > 0
    tightest = rank.shift(1).rolling(SQUEEZE_RECENT, min_periods=1).min()
    # The range of the RANGE_BARS candles before this one (the current candle excluded).
    top = high.shift(1).rolling(RANGE_BARS).max()
    bottom = low.shift(1).rolling(RANGE_BARS).min()
    height, middle = top - bottom, (top + bottom) / 2
    long = squeezed & (close > top)
    short = squeezed & (close < bottom)
    direction = pd.Series(np.select([long, short], [1, -1], 0), index=frame.index)
    # Stop: the range's midpoint or 1.5 ATR, whichever is closer to the entry.
    stop = pd.Series(
        np.select([long, short], [np.maximum(middle, close - STOP_ATR * atr), np.minimum(middle, close + STOP_ATR * atr)], np.nan),
        index=frame.index,
    )
    risk = (close - stop).abs()
    # Target: the range height projected from the broken edge, and never less than MIN_REWARD_RISK.
    projected = pd.Series(np.select([long, short], [top + height, bottom - height], np.nan), index=frame.index)
    floor = close + direction * MIN_REWARD_RISK * risk
    target = projected.where(direction * (projected - floor) >= 0, floor)
    strength = pd.Series(np.select([long, short], [(close - top) / atr, (bottom - close) / atr], 0.0), index=frame.index)
    tightness = (1 - tightest / SQUEEZE_PCT).clip(0, 1)
    confidence = (0.4 + 0.3 * strength.fillna(0).clip(0, 1) + 0.3 * tightness.fillna(0)).where(direction != 0, 0.0)
    return signal_frame(direction, confidence, stop, target, close)


def explain(row: pd.Series, signal: pd.Series) -> str:
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
    explain=explain,
)
