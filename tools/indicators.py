"""Indicator frames: candles plus the indicator columns every node shares.

Computed once per (symbol, timeframe, as_of) by :class:`tools.frames.FrameCache`
and read by all nodes, so no indicator is computed twice in a run.

The columns are TA-Lib's C kernels, called on numpy arrays. This is exactly what
pandas-ta 0.4.71b0 computes for these columns when TA-Lib is installed (its `ema`,
`rsi`, `atr`, `adx` and `bbands` hand the Series to `talib.EMA`/`RSI`/`ATR`/`ADX`/`BBANDS`
and return the result unchanged), without pandas-ta's per-call pandas overhead: the
same kernels, the same arguments, bit-identical values. The minimum lengths below are
pandas-ta's, under which it answers None (a NaN column here).
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import pandas as pd
import talib

EMA_FAST = 20
EMA_SLOW = 50
RSI_LENGTH = 14
ATR_LENGTH = 14
ADX_LENGTH = 14
BB_LENGTH = 20
BB_STD = 2.0
# The slowest indicator (EMA 50) needs this many candles before it means anything.
MIN_CANDLES = 100
# TA-Lib's MA_Type.SMA: pandas-ta's default Bollinger middle band.
_SMA = 0
INDICATOR_COLUMNS = ("ema_fast", "ema_slow", "rsi", "atr", "adx", "bb_lower", "bb_mid", "bb_upper", "bb_width")


def _ema(close: np.ndarray, length: int) -> np.ndarray:
    # pandas-ta's ema needs `length` candles.
    return talib.EMA(close, length) if len(close) >= length else np.full(len(close), np.nan)


def _indicators(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> dict[str, np.ndarray]:
    n, nan = len(close), np.full(len(close), np.nan)
    columns = {
        "ema_fast": _ema(close, EMA_FAST),
        "ema_slow": _ema(close, EMA_SLOW),
        # pandas-ta's rsi and atr need length + 1 candles; its adx needs its atr, so the same.
        "rsi": talib.RSI(close, RSI_LENGTH) if n >= RSI_LENGTH + 1 else nan,
        "atr": talib.ATR(high, low, close, ATR_LENGTH) if n >= ATR_LENGTH + 1 else nan,
        "adx": talib.ADX(high, low, close, ADX_LENGTH) if n >= ADX_LENGTH + 1 else nan,
    }
    if n >= BB_LENGTH:
        upper, mid, lower = talib.BBANDS(close, BB_LENGTH, BB_STD, BB_STD, _SMA)
        with np.errstate(divide="ignore", invalid="ignore"):
            width = (upper - lower) / mid
    else:
        upper = mid = lower = width = nan
    columns.update(bb_lower=lower, bb_mid=mid, bb_upper=upper, bb_width=width)
    return columns


@functools.lru_cache(maxsize=64)
def _column_index(names: tuple[str, ...]) -> pd.Index:
    # Building a string Index from a list costs ~0.35 ms in pandas 3; an Index is immutable, so share one.
    return pd.Index(names)


def column_arrays(frame: pd.DataFrame, *names: str) -> tuple[np.ndarray, ...]:
    """Columns of a numeric frame as float arrays (read-only views where pandas allows).

    `frame[name]` builds a Series per call (~25 µs in pandas 3); the nodes read a
    handful of columns of every frame on every run. An indicator frame is one float
    block, so one `to_numpy()` serves every column.
    """
    values = frame.to_numpy()
    if values.dtype == np.float64:
        positions = [frame.columns.get_loc(name) for name in names]
        if all(isinstance(position, int) for position in positions):
            return tuple(values[:, position] for position in positions)
    # Another dtype somewhere (or a duplicated name): one column at a time.
    return tuple(frame[name].to_numpy(dtype=float) for name in names)


def _candle_columns(candles: pd.DataFrame) -> dict[str, np.ndarray]:
    """The candles' columns as arrays of their own dtypes: one `to_numpy()` when all are float64 (the usual case)."""
    if candles.columns.is_unique and all(dtype == np.float64 for dtype in candles.dtypes):
        values = candles.to_numpy()
        return {c: values[:, i] for i, c in enumerate(candles.columns)}
    return {c: candles[c].to_numpy() for c in candles.columns}


def enrich(candles: pd.DataFrame) -> pd.DataFrame:
    """Candles with ema_fast, ema_slow, rsi, atr, adx, bb_lower/mid/upper, bb_width columns."""
    # Candle columns first, in their order; an indicator column the candles already have is replaced in place.
    columns = _candle_columns(candles)
    high, low, close = (np.ascontiguousarray(columns[c], dtype=float) for c in ("high", "low", "close"))
    columns.update(_indicators(high, low, close))
    if all(values.dtype == np.float64 for values in columns.values()):
        # One float block built in one go (a column per row of `block`, so each column is contiguous)
        # instead of a dozen DataFrame.__setitem__ calls, each pandas bookkeeping on a 300-row frame.
        block = np.empty((len(columns), len(candles)))
        for i, values in enumerate(columns.values()):
            block[i] = values
        frame = pd.DataFrame(block.T, index=candles.index, columns=_column_index(tuple(columns)), copy=False)
    else:  # candles of another dtype (an integer volume) keep it
        frame = pd.DataFrame({c: np.array(values) for c, values in columns.items()}, index=candles.index)
    if candles.attrs:
        frame.attrs = copy.deepcopy(candles.attrs)
    return frame
