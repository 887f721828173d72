"""Trend following: the Supertrend (10, 3) points the way and ADX confirms there is a trend to follow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas_ta as ta

from nodes.strategies import Strategy, signal_frame

LENGTH = 10
MULTIPLIER = 3.0
MIN_ADX = 20.0
TARGET_ATR = 3.0
# The line can trail the close by more than TARGET_ATR; the target then moves out to keep this reward/risk.
MIN_REWARD_RISK = 1.5
# Bars a Supertrend direction has held before it counts as established (confidence only).
SETTLED_BARS = 20


def supertrend(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(line, direction ±1) of pandas-ta's Supertrend; NaN where it is not defined yet."""
    # pandas-ta 0.4.71b0 names the factor `multiplier`; an unknown keyword (e.g. atr_mult) is silently ignored.
    table = ta.supertrend(frame["high"], frame["low"], frame["close"], length=LENGTH, multiplier=MULTIPLIER)
    if table is None:  # fewer than LENGTH + 1 candles
        nan = pd.Series(np.nan, index=frame.index)
        return nan, nan
    suffix = f"_{LENGTH}_{MULTIPLIER}"
    return table[f"SUPERT{suffix}"], table[f"SUPERTd{suffix}"]


def evaluate(frame: pd.DataFrame) -> pd.DataFrame:
    close, atr, adx = frame["close"], frame["atr"], frame["adx"]
    line, trend = supertrend(frame)
    trending = adx >= MIN_ADX
    # The line must exist and sit on the losing side of the close, or there is no stop to trade against.
    long = trending & (trend == 1) & (line < close)
    short = trending & (trend == -1) & (line > close)
    direction = pd.Series(np.select([long, short], [1, -1], 0), index=frame.index)
    # Candles since the Supertrend last flipped, counted inside each run of one direction.
    run = trend.ne(trend.shift(1)).cumsum()
    held = trend.groupby(run).cumcount() + 1
    strength = ((adx - MIN_ADX) / 30).clip(0, 1)
    settled = (held / SETTLED_BARS).clip(0, 1)
    confidence = (0.4 + 0.35 * strength.fillna(0) + 0.25 * settled.fillna(0)).where(direction != 0, 0.0)
    return signal_frame(direction, confidence, line, close + direction * np.maximum(TARGET_ATR * atr, MIN_REWARD_RISK * (close - line).abs()), close)


def explain(row: pd.Series, signal: pd.Series) -> str:
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
    explain=explain,
)
