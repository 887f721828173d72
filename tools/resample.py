"""Aggregate candles of a lower timeframe into complete candles of a higher one.

Buckets are calendar aligned exactly as :func:`tools.timeframes.floor_time` aligns
them (days at 00:00 UTC, weeks from Monday 00:00 UTC). A bucket is emitted only when
it holds every source candle it should, each once and on its grid slot: a partial
bucket (the one still forming, or one with a hole) would be a candle that lies.
NaN values are propagated, never skipped, so the data-quality gate still sees them.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from tools.timeframes import floor_time, period

COLUMNS = ["open", "high", "low", "close", "volume"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NS = 1_000_000_000


def _ns(timeframe: str) -> int:
    return int(period(timeframe).total_seconds()) * _NS


def _origin_ns(timeframe: str) -> int:
    """A bucket boundary of ``timeframe`` (floor_time's alignment), in ns since the epoch."""
    return int(floor_time(_EPOCH, timeframe).timestamp()) * _NS


def _frame(index: np.ndarray, values: dict[str, np.ndarray]) -> pd.DataFrame:
    times = pd.DatetimeIndex(index.astype("int64").view("M8[ns]"), name="time").tz_localize(UTC)
    return pd.DataFrame({c: np.asarray(values[c], dtype=np.float64) for c in COLUMNS}, index=times)


def resample(candles: pd.DataFrame, source_tf: str, target_tf: str) -> pd.DataFrame:
    """Complete ``target_tf`` candles built from ``source_tf`` candles (open-time index)."""
    src, dst = _ns(source_tf), _ns(target_tf)
    if dst < src or dst % src:
        raise ValueError(f"cannot resample {source_tf} to {target_tf}: not a whole multiple of it")
    need = dst // src
    index = pd.DatetimeIndex(candles.index)
    index = index.tz_localize(UTC) if index.tz is None else index.tz_convert(UTC)
    t = index.as_unit("ns").asi8
    valid = ~index.isna()
    order = np.argsort(t[valid], kind="stable")
    t = t[valid][order]
    cols = {c: candles[c].to_numpy(dtype=np.float64)[valid][order] for c in COLUMNS}
    if len(t) == 0:
        return _frame(np.array([], dtype=np.int64), {c: np.array([]) for c in COLUMNS})

    dst_origin = _origin_ns(target_tf)
    bucket = dst_origin + ((t - dst_origin) // dst) * dst
    on_grid = (t - _origin_ns(source_tf)) % src == 0
    first = np.concatenate(([True], bucket[1:] != bucket[:-1]))
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], len(t))
    count = ends - starts
    distinct = np.add.reduceat(np.concatenate(([True], t[1:] != t[:-1])) | first, starts)
    aligned = np.add.reduceat(on_grid.astype(np.int64), starts)
    complete = (count == need) & (distinct == need) & (aligned == need)

    s, e = starts[complete], ends[complete]
    values = {
        "open": cols["open"][s],
        # ufunc.reduceat propagates NaN (unlike pandas' groupby max/min/sum)
        "high": np.maximum.reduceat(cols["high"], starts)[complete],
        "low": np.minimum.reduceat(cols["low"], starts)[complete],
        "close": cols["close"][e - 1],
        "volume": np.add.reduceat(cols["volume"], starts)[complete],
    }
    return _frame(bucket[s], values)
