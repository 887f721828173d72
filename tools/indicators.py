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
        positions = column_positions(frame.columns, names)
        if all(isinstance(position, int) for position in positions):
            return tuple(values[:, position] for position in positions)
    # Another dtype somewhere (or a duplicated name): one column at a time.
    return tuple(frame[name].to_numpy(dtype=float) for name in names)


# Column Index -> (that Index, its get_loc answers so far), by id: an Index is immutable, and every indicator frame
# shares one (see _column_index), so the nodes' ~50 column_arrays calls per run ask pandas once per name. The Index
# is held, so its id is not reused while it is here.
_LOCATIONS: dict[int, tuple[pd.Index, dict[str, object]]] = {}
_LOCATIONS_KEPT = 64


def column_positions(columns: pd.Index, names: tuple[str, ...]) -> list[object]:
    """`[columns.get_loc(name) for name in names]`, remembered per column Index."""
    entry = _LOCATIONS.get(id(columns))
    if entry is None or entry[0] is not columns:
        if len(_LOCATIONS) >= _LOCATIONS_KEPT:
            _LOCATIONS.clear()
        entry = _LOCATIONS[id(columns)] = (columns, {})
    known = entry[1]
    positions = []
    for name in names:
        position = known.get(name)
        if position is None:
            position = known[name] = columns.get_loc(name)
        positions.append(position)
    return positions


def adjacent_columns(frame: pd.DataFrame, *names: str) -> np.ndarray | None:
    """The named columns as one (rows, len(names)) float view, when the frame is one float block holding
    them side by side in this order (an indicator frame's candle columns); None otherwise."""
    values = frame.to_numpy()
    if values.dtype != np.float64:
        return None
    positions = column_positions(frame.columns, names)
    # A duplicated name answers a slice or a mask, never equal to an int (and a mask must not meet `==`).
    if not all(isinstance(position, int) for position in positions):
        return None
    first = positions[0]
    if positions != list(range(first, first + len(names))):
        return None
    return values[:, first : first + len(names)]


def _candle_columns(candles: pd.DataFrame) -> dict[str, np.ndarray]:
    """The candles' columns as arrays of their own dtypes: one `to_numpy()` when all are float64 (the usual case)."""
    if candles.columns.is_unique and all(dtype == np.float64 for dtype in candles.dtypes):
        values = candles.to_numpy()
        return {c: values[:, i] for i, c in enumerate(candles.columns)}
    return {c: candles[c].to_numpy() for c in candles.columns}


def _indicator_frame(columns: dict[str, np.ndarray], index: pd.Index, attrs: dict) -> pd.DataFrame:
    """The candle columns (in their order) plus the indicator columns, as one frame."""
    high, low, close = (np.ascontiguousarray(columns[c], dtype=float) for c in ("high", "low", "close"))
    # An indicator column the candles already have is replaced in place.
    columns.update(_indicators(high, low, close))
    if all(values.dtype == np.float64 for values in columns.values()):
        # One float block built in one go (a column per row of `block`, so each column is contiguous)
        # instead of a dozen DataFrame.__setitem__ calls, each pandas bookkeeping on a 300-row frame.
        block = np.empty((len(columns), len(index)))
        for i, values in enumerate(columns.values()):
            block[i] = values
        frame = pd.DataFrame(block.T, index=index, columns=_column_index(tuple(columns)), copy=False)
    else:  # candles of another dtype (an integer volume) keep it
        frame = pd.DataFrame({c: np.array(values) for c, values in columns.items()}, index=index)
    if attrs:
        frame.attrs = copy.deepcopy(attrs)
    return frame


def enrich(candles: pd.DataFrame) -> pd.DataFrame:
    """Candles with ema_fast, ema_slow, rsi, atr, adx, bb_lower/mid/upper, bb_width columns."""
    return _indicator_frame(_candle_columns(candles), candles.index, candles.attrs)


def enrich_values(values: np.ndarray, names: list[str], index: pd.Index, attrs: dict) -> pd.DataFrame:
    """`enrich` of candles handed over as one float64 array (a row per candle, a column per name).

    The same frame as `enrich(pd.DataFrame(values, index, names))` for unique names, without
    building that frame and asking it for its dtypes (~80 µs in pandas 3, more than the indicators).
    """
    return _indicator_frame({name: values[:, i] for i, name in enumerate(names)}, index, attrs)
