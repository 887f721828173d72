"""Indicator frames: candles plus the pandas-ta columns every node shares.

Computed once per (symbol, timeframe, as_of) by :class:`tools.frames.FrameCache`
and read by all nodes, so no indicator is computed twice in a run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas_ta as ta

EMA_FAST = 20
EMA_SLOW = 50
RSI_LENGTH = 14
ATR_LENGTH = 14
ADX_LENGTH = 14
BB_LENGTH = 20
BB_STD = 2.0
# The slowest indicator (EMA 50) needs this many candles before it means anything.
MIN_CANDLES = 100


def _or_nan(values: pd.Series | None) -> pd.Series | float:
    # pandas-ta answers None, not NaNs, when the series is shorter than the indicator's length.
    return np.nan if values is None else values


def enrich(candles: pd.DataFrame) -> pd.DataFrame:
    """Candles with ema_fast, ema_slow, rsi, atr, adx, bb_lower/mid/upper, bb_width columns."""
    frame = candles.copy()
    close, high, low = frame["close"], frame["high"], frame["low"]
    frame["ema_fast"] = _or_nan(ta.ema(close, length=EMA_FAST))
    frame["ema_slow"] = _or_nan(ta.ema(close, length=EMA_SLOW))
    frame["rsi"] = _or_nan(ta.rsi(close, length=RSI_LENGTH))
    frame["atr"] = _or_nan(ta.atr(high, low, close, length=ATR_LENGTH))
    adx = ta.adx(high, low, close, length=ADX_LENGTH)
    frame["adx"] = adx[f"ADX_{ADX_LENGTH}"] if adx is not None else np.nan
    bands = ta.bbands(close, length=BB_LENGTH, lower_std=BB_STD, upper_std=BB_STD)
    if bands is not None:
        lower, mid, upper = (bands[c] for c in bands.columns[:3])
        frame["bb_lower"], frame["bb_mid"], frame["bb_upper"] = lower, mid, upper
        frame["bb_width"] = (upper - lower) / mid
    else:
        frame["bb_lower"] = frame["bb_mid"] = frame["bb_upper"] = frame["bb_width"] = np.nan
    return frame
