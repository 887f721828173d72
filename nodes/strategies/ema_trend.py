"""Trend following: fast EMA above slow EMA, price above both, ADX confirming a trend."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from nodes.strategies import SignalArrays, Strategy, clip01, columns, diff, frame_of, select, signal_arrays

MIN_ADX = 20.0
SLOPE_BARS = 10
STOP_ATR = 2.0
TARGET_ATR = 3.0


def signals(frame: pd.DataFrame) -> SignalArrays:
    close, fast, slow, atr, adx = columns(frame, "close", "ema_fast", "ema_slow", "atr", "adx")
    slope = diff(slow, SLOPE_BARS)
    long = (fast > slow) & (close > fast) & (adx >= MIN_ADX) & (slope > 0)
    short = (fast < slow) & (close < fast) & (adx >= MIN_ADX) & (slope < 0)
    direction = select([long, short], [1, -1], 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        trend_strength = clip01((adx - MIN_ADX) / 30)
        # EMA separation measured in ATRs, so it means the same on every price scale.
        separation = np.clip(np.abs(fast - slow) / atr, 0, 2) / 2
    confidence = 0.4 + 0.3 * trend_strength + 0.3 * separation
    stop, target = close - direction * STOP_ATR * atr, close + direction * TARGET_ATR * atr
    return signal_arrays(direction, confidence, stop, target, close, frame.index)


def evaluate(frame: pd.DataFrame) -> pd.DataFrame:
    return frame_of(signals(frame))


def explain(row: pd.Series, signal: Mapping[str, float]) -> str:
    if signal["direction"] == 0:
        return f"no aligned trend (EMA20 {row['ema_fast']:.6g} vs EMA50 {row['ema_slow']:.6g}, ADX {row['adx']:.1f})"
    side = "above" if signal["direction"] > 0 else "below"
    return (
        f"close {row['close']:.6g} {side} EMA20 {row['ema_fast']:.6g} {side} EMA50 {row['ema_slow']:.6g}, "
        f"ADX {row['adx']:.1f} >= {MIN_ADX:.0f}, EMA50 sloping with the trend; stop {STOP_ATR} ATR"
    )


STRATEGY = Strategy(
    name="ema_trend",
    version="1.0.0",
    kind="momentum",
    regimes=("TRENDING_UP", "TRENDING_DOWN"),
    evaluate=evaluate,
    signals=signals,
    explain=explain,
)
