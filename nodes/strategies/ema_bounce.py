"""Trend pullback: in a trend, a candle dips to the 20-EMA and closes back on the trend's side of it."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from nodes.strategies import (
    SignalArrays,
    Strategy,
    clip01,
    columns,
    diff,
    frame_of,
    select,
    shift,
    signal_arrays,
    zero_nan,
)

SLOPE_BARS = 10
# The low may stop short of the EMA by this many ATRs and still count as a touch.
TOUCH_ATR = 0.25
# A dip deeper than this through the EMA is a break, not a bounce.
MAX_PIERCE_ATR = 1.0
STOP_PAD_ATR = 0.5
REWARD_RISK = 2.0
# No trend, no pullback to buy: the EMAs of a range cross back and forth.
MIN_ADX = 20.0


def signals(frame: pd.DataFrame) -> SignalArrays:
    high, low, close, fast, slow, atr, adx = columns(frame, "high", "low", "close", "ema_fast", "ema_slow", "atr", "adx")
    trending = adx >= MIN_ADX
    slope = diff(slow, SLOPE_BARS)
    up = trending & (fast > slow) & (slope > 0)
    down = trending & (fast < slow) & (slope < 0)
    touch_low, touch_high = fast + TOUCH_ATR * atr, fast - TOUCH_ATR * atr
    # The first touch of a pullback: the previous candle stayed clear of the EMA on the trend's side.
    came_down = shift(low, 1) > shift(touch_low, 1)
    came_up = shift(high, 1) < shift(touch_high, 1)
    long = up & came_down & (low <= touch_low) & (low >= fast - MAX_PIERCE_ATR * atr) & (close > fast)
    short = down & came_up & (high >= touch_high) & (high <= fast + MAX_PIERCE_ATR * atr) & (close < fast)
    direction = select([long, short], [1, -1], 0)
    # Stop beyond the wick that touched the EMA, target REWARD_RISK times that risk.
    stop = select([long, short], [low - STOP_PAD_ATR * atr, high + STOP_PAD_ATR * atr], np.nan)
    risk = np.abs(close - stop)
    span = np.where(high > low, high - low, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Rejection: how far the close came back from the touching wick, as a share of the candle's range.
        rejection = select([long, short], [(close - low) / span, (high - close) / span], 0.0)
    trend_strength = clip01((adx - MIN_ADX) / 30)
    confidence = 0.4 + 0.3 * zero_nan(trend_strength) + 0.3 * clip01(zero_nan(rejection))
    return signal_arrays(direction, confidence, stop, close + direction * REWARD_RISK * risk, close, frame.index)


def evaluate(frame: pd.DataFrame) -> pd.DataFrame:
    return frame_of(signals(frame))


def explain(row: pd.Series, signal: Mapping[str, float]) -> str:
    if signal["direction"] == 0:
        return (
            f"no EMA bounce: low {row['low']:.6g} / high {row['high']:.6g} vs EMA20 {row['ema_fast']:.6g} "
            f"(EMA50 {row['ema_slow']:.6g}, ATR {row['atr']:.6g}, close {row['close']:.6g})"
        )
    if signal["direction"] > 0:
        wick, side = f"low {row['low']:.6g}", "above"
    else:
        wick, side = f"high {row['high']:.6g}", "below"
    return (
        f"{wick} touched EMA20 {row['ema_fast']:.6g} (within {TOUCH_ATR} ATR = {TOUCH_ATR * row['atr']:.6g}) and the close "
        f"{row['close']:.6g} held {side} it, EMA20 {side} EMA50 {row['ema_slow']:.6g}; stop {signal['stop']:.6g} "
        f"beyond the wick, target {signal['target']:.6g} ({REWARD_RISK:g}R)"
    )


STRATEGY = Strategy(
    name="ema_bounce",
    version="1.0.0",
    kind="momentum",
    regimes=("TRENDING_UP", "TRENDING_DOWN"),
    evaluate=evaluate,
    signals=signals,
    explain=explain,
)
