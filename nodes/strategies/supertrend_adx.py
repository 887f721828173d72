"""Trend following: the Supertrend (10, 3) points the way and ADX confirms there is a trend to follow."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import talib

from nodes.strategies import SignalArrays, Strategy, clip01, columns, frame_of, select, signal_arrays, zero_nan

LENGTH = 10
MULTIPLIER = 3.0
MIN_ADX = 20.0
TARGET_ATR = 3.0
# The line can trail the close by more than TARGET_ATR; the target then moves out to keep this reward/risk.
MIN_REWARD_RISK = 1.5
# Bars a Supertrend direction has held before it counts as established (confidence only).
SETTLED_BARS = 20


def supertrend(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(line, direction ±1) of pandas-ta 0.4.71b0's Supertrend; NaN where it is not defined yet.

    `ta.supertrend`, step for step, on numpy arrays. pandas-ta runs this loop through
    `Series.iat` reads and writes, ~12 ms a frame, most of this strategy's cost; the
    arithmetic is a few hundred comparisons. The bands use the same TA-Lib ATR kernel
    pandas-ta calls, the loop keeps its quirks (only the band of the current direction
    ratchets; a flip takes the other band as it is), and tests/test_strategy_pool.py
    checks the result against `ta.supertrend` itself, value for value. TA-Lib's own
    SUPERTREND is not a substitute: it ratchets both bands, so its line differs on the
    candles where the direction flips.
    """
    high, low, close = (np.ascontiguousarray(values) for values in columns(frame, "high", "low", "close"))
    n = len(close)
    if n < LENGTH + 1:  # pandas-ta answers None
        return np.full(n, np.nan), np.full(n, np.nan)
    atr = talib.ATR(high, low, close, LENGTH)
    if np.isnan(atr).all():  # pandas-ta's atr answers None and its supertrend fails on it
        raise ValueError("Supertrend needs a defined ATR")
    middle, band = 0.5 * (high + low), MULTIPLIER * atr
    lower, upper, closes = (middle - band).tolist(), (middle + band).tolist(), close.tolist()
    direction, line = [1], [np.nan]
    # The previous candle's direction and bands (as ratcheted), carried in locals: list reads
    # by index were most of this loop's cost.
    side, below, above = 1, lower[0], upper[0]
    for low_band, high_band, price in zip(lower[1:], upper[1:], closes[1:]):
        if price > above:
            side = 1
        elif price < below:
            side = -1
        elif side > 0:  # no break: the band on the trend's side may only move with the trend
            if low_band < below:
                low_band = below
        elif high_band > above:
            high_band = above
        direction.append(side)
        line.append(low_band if side > 0 else high_band)
        below, above = low_band, high_band
    trend = np.array(direction, dtype=float)
    trend[:LENGTH] = np.nan
    return np.array(line), trend


def held_bars(trend: np.ndarray) -> np.ndarray:
    """Candles since the direction last changed, this one included (a NaN direction is a run of its own)."""
    count = len(trend)
    # A run starts where the direction differs from the candle before: NaN differs from anything,
    # so every undefined row starts one, and so does the first candle.
    change = np.ones(count, dtype=bool)
    np.not_equal(trend[1:], trend[:-1], out=change[1:])
    rows = np.arange(count)
    # Each row's run start as a running maximum of the starts so far: fewer calls than indexing them.
    start = np.where(change, rows, 0)
    np.maximum.accumulate(start, out=start)
    return rows - start + 1


def signals(frame: pd.DataFrame) -> SignalArrays:
    close, atr, adx = columns(frame, "close", "atr", "adx")
    line, trend = supertrend(frame)
    trending = adx >= MIN_ADX
    # The line must exist and sit on the losing side of the close, or there is no stop to trade against.
    long = trending & (trend == 1) & (line < close)
    short = trending & (trend == -1) & (line > close)
    direction = select([long, short], [1, -1], 0)
    strength = clip01((adx - MIN_ADX) / 30)
    settled = clip01(held_bars(trend) / SETTLED_BARS)
    confidence = 0.4 + 0.35 * zero_nan(strength) + 0.25 * zero_nan(settled)
    target = close + direction * np.maximum(TARGET_ATR * atr, MIN_REWARD_RISK * np.abs(close - line))
    return signal_arrays(direction, confidence, line, target, close, frame.index)


def evaluate(frame: pd.DataFrame) -> pd.DataFrame:
    return frame_of(signals(frame))


def explain(row: pd.Series, signal: Mapping[str, float]) -> str:
    if signal["direction"] == 0:
        return f"no confirmed Supertrend trend: ADX {row['adx']:.1f} (needs ≥ {MIN_ADX:.0f}), close {row['close']:.6g}"
    side = "up" if signal["direction"] > 0 else "down"
    return (
        f"Supertrend ({LENGTH}, {MULTIPLIER:g}) points {side} with its line at {signal['stop']:.6g} "
        f"vs close {row['close']:.6g}, ADX {row['adx']:.1f} ≥ {MIN_ADX:.0f}; stop at the line, "
        f"target {signal['target']:.6g} ({TARGET_ATR:g} ATR of {row['atr']:.6g}, at least {MIN_REWARD_RISK:g}R)"
    )


STRATEGY = Strategy(
    name="supertrend_adx",
    version="1.0.0",
    kind="momentum",
    regimes=("TRENDING_UP", "TRENDING_DOWN"),
    evaluate=evaluate,
    signals=signals,
    explain=explain,
)
