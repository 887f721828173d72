"""Momentum cycle turns: the MACD histogram crosses zero with RSI on the same side of 50 and moving that way.

The MACD histogram (MACD 12/26 minus its 9-signal; pandas-ta `ta.macd`, TA-Lib kernel) swings
with the market's momentum cycle, and its zero crossings mark the cycle's turns. A crossing
counts only if the swing before it was real (the histogram reached SWING_ATR ATRs on the other
side within CYCLE_BARS candles), so noise wobbling around zero is not a turn. pandas-ta also
ships Ehlers cycle indicators (`ebsw`, `reflex`, `trendflex`); none is checked against a
reference in this project, so none is used.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas_ta as ta

from nodes.strategies import Strategy, signal_frame

FAST, SLOW, SIGNAL = 12, 26, 9
CYCLE_BARS = 10
SWING_ATR = 0.1
RSI_MID = 50.0
RSI_RISING_BARS = 3
STOP_ATR = 2.0
TARGET_ATR = 3.0


def histogram(close: pd.Series) -> pd.Series:
    table = ta.macd(close, fast=FAST, slow=SLOW, signal=SIGNAL)
    if table is None:  # too few candles
        return pd.Series(np.nan, index=close.index)
    return table[f"MACDh_{FAST}_{SLOW}_{SIGNAL}"]


def evaluate(frame: pd.DataFrame) -> pd.DataFrame:
    close, rsi, atr = frame["close"], frame["rsi"], frame["atr"]
    hist = histogram(close)
    before = hist.shift(1)
    # The histogram in ATRs, at its extremes over the CYCLE_BARS candles before this one.
    scaled = hist / atr
    trough = scaled.shift(1).rolling(CYCLE_BARS, min_periods=1).min()
    peak = scaled.shift(1).rolling(CYCLE_BARS, min_periods=1).max()
    rsi_change = rsi.diff(RSI_RISING_BARS)
    long = (hist > 0) & (before <= 0) & (trough <= -SWING_ATR) & (rsi > RSI_MID) & (rsi_change > 0)
    short = (hist < 0) & (before >= 0) & (peak >= SWING_ATR) & (rsi < RSI_MID) & (rsi_change < 0)
    direction = pd.Series(np.select([long, short], [1, -1], 0), index=frame.index)
    # Evidence: how far RSI is past 50, and how deep the swing that just turned was (both price-scale free).
    rsi_push = ((rsi - RSI_MID).abs() / 20).clip(0, 1)
    swing = pd.Series(np.select([long, short], [-trough, peak], 0.0), index=frame.index)
    depth = (swing / (4 * SWING_ATR)).clip(0, 1)
    confidence = (0.4 + 0.3 * rsi_push.fillna(0) + 0.3 * depth.fillna(0)).where(direction != 0, 0.0)
    return signal_frame(direction, confidence, close - direction * STOP_ATR * atr, close + direction * TARGET_ATR * atr, close)


def explain(row: pd.Series, signal: pd.Series) -> str:
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
    explain=explain,
)
