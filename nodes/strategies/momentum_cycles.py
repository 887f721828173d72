"""Momentum cycle turns: the MACD histogram crosses zero with RSI on the same side of 50 and moving that way.

The MACD histogram (MACD 12/26 minus its 9-signal; TA-Lib's `MACD`, the kernel behind pandas-ta's
`ta.macd`, called on the numpy array to skip pandas-ta's per-call overhead) swings
with the market's momentum cycle, and its zero crossings mark the cycle's turns. A crossing
counts only if the swing before it was real (the histogram reached SWING_ATR ATRs on the other
side within CYCLE_BARS candles), so noise wobbling around zero is not a turn. pandas-ta also
ships Ehlers cycle indicators (`ebsw`, `reflex`, `trendflex`); none is checked against a
reference in this project, so none is used.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import talib

from nodes.strategies import (
    SignalArrays,
    Strategy,
    clip01,
    columns,
    diff,
    frame_of,
    rolling,
    select,
    shift,
    signal_arrays,
    zero_nan,
)

FAST, SLOW, SIGNAL = 12, 26, 9
CYCLE_BARS = 10
SWING_ATR = 0.1
RSI_MID = 50.0
RSI_RISING_BARS = 3
STOP_ATR = 2.0
TARGET_ATR = 3.0


def histogram(close: np.ndarray) -> np.ndarray:
    """TA-Lib's MACD histogram, as `ta.macd` returns it; NaN where pandas-ta answers None (too few candles)."""
    if len(close) < SLOW + SIGNAL - 1:
        return np.full(len(close), np.nan)
    return talib.MACD(np.ascontiguousarray(close), FAST, SLOW, SIGNAL)[2]


def signals(frame: pd.DataFrame) -> SignalArrays:
    close, rsi, atr = columns(frame, "close", "rsi", "atr")
    hist = histogram(close)
    before = shift(hist, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        # The histogram in ATRs, at its extremes over the CYCLE_BARS candles before this one.
        scaled = shift(hist / atr, 1)
    trough = rolling(scaled, CYCLE_BARS, np.fmin, min_periods=1)
    peak = rolling(scaled, CYCLE_BARS, np.fmax, min_periods=1)
    rsi_change = diff(rsi, RSI_RISING_BARS)
    long = (hist > 0) & (before <= 0) & (trough <= -SWING_ATR) & (rsi > RSI_MID) & (rsi_change > 0)
    short = (hist < 0) & (before >= 0) & (peak >= SWING_ATR) & (rsi < RSI_MID) & (rsi_change < 0)
    direction = select([long, short], [1, -1], 0)
    # Evidence: how far RSI is past 50, and how deep the swing that just turned was (both price-scale free).
    rsi_push = clip01(np.abs(rsi - RSI_MID) / 20)
    swing = select([long, short], [-trough, peak], 0.0)
    depth = clip01(swing / (4 * SWING_ATR))
    confidence = 0.4 + 0.3 * zero_nan(rsi_push) + 0.3 * zero_nan(depth)
    stop, target = close - direction * STOP_ATR * atr, close + direction * TARGET_ATR * atr
    return signal_arrays(direction, confidence, stop, target, close, frame.index)


def evaluate(frame: pd.DataFrame) -> pd.DataFrame:
    return frame_of(signals(frame))


def explain(row: pd.Series, signal: Mapping[str, float]) -> str:
    if signal["direction"] == 0:
        return f"no momentum turn on this candle: RSI {row['rsi']:.1f}, close {row['close']:.6g}, ATR {row['atr']:.6g}"
    side, way = ("above", "rising") if signal["direction"] > 0 else ("below", "falling")
    return (
        f"MACD({FAST},{SLOW},{SIGNAL}) histogram crossed {side} zero after a swing of at least {SWING_ATR:g} ATR, "
        f"RSI {row['rsi']:.1f} {side} {RSI_MID:.0f} and {way} over {RSI_RISING_BARS} candles; "
        f"stop {signal['stop']:.6g} ({STOP_ATR:g} ATR of {row['atr']:.6g}), target {signal['target']:.6g} ({TARGET_ATR:g} ATR)"
    )


STRATEGY = Strategy(
    name="momentum_cycles",
    version="1.0.0",
    kind="momentum",
    regimes=("TRENDING_UP", "TRENDING_DOWN", "RANGING"),
    evaluate=evaluate,
    signals=signals,
    explain=explain,
)
