"""Data-quality rules for one timeframe's candles.

`normalize` repairs what can be repaired without inventing data (order,
duplicates); `inspect` reports what must stop the run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from state.sections import Check
from tools.indicators import adjacent_columns, column_arrays
from tools.timeframes import as_utc, period

OHLCV = ("open", "high", "low", "close", "volume")
# pandas' integer for NaT in `asi8`.
NAT = np.iinfo(np.int64).min


def normalize(candles: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Sorted, de-duplicated candles and a note for every repair made."""
    repairs: list[str] = []
    frame = candles
    if not frame.index.is_monotonic_increasing:
        frame = frame.sort_index()
        repairs.append("sorted out-of-order candles")
    # `is_unique` comes with the monotonic check above (one pass of pandas' index engine); hashing
    # every stamp for `duplicated` is only needed when there is something to drop.
    if not frame.index.is_unique:
        duplicated = frame.index.duplicated(keep="last")
        frame = frame[~duplicated]
        repairs.append(f"dropped {int(duplicated.sum())} duplicate candles")
    return frame, repairs


def is_clean(index: pd.Index) -> bool:
    """Whether `normalize` would repair nothing in candles with this index (and hand them back as they are)."""
    return index.is_monotonic_increasing and index.is_unique


# The detail of a history without gaps, the usual case; formatting a Timedelta costs ~5 µs.
_NO_GAPS = f"0 gaps, largest {pd.Timedelta(0)}"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Index units finer than a timedelta's microsecond, per microsecond (coarser ones take `_gaps` itself).
_PER_MICROSECOND = {"us": 1, "ns": 1_000}
_MICROSECONDS_PER = {"s": (1_000_000, 1), "ms": (1_000, 1), "us": (1, 1), "ns": (1, 1_000)}


def _gaps(index: pd.DatetimeIndex, step: timedelta) -> tuple[int, pd.Timedelta]:
    """(how many gaps between consecutive candles exceed one period, the largest of them)."""
    # Integer stamps viewed as numpy timedeltas in the index's own unit: no per-candle Timestamp objects.
    diffs = np.diff(index.asi8).view(f"m8[{index.unit}]")
    missing = diffs[diffs > np.timedelta64(step)]
    return len(missing), pd.Timedelta(missing.max()) if len(missing) else pd.Timedelta(0)


def _gaps_detail(index: pd.DatetimeIndex, step: timedelta) -> str:
    stamps = index.asi8
    if len(stamps) < 2:
        return _NO_GAPS
    per_unit = _PER_MICROSECOND.get(index.unit)
    # No step longer than one period: the largest step compared in integers of the index's unit, as `_gaps`
    # compares its timedelta64s. A NaT step (the smallest integer) is no gap there and no maximum here.
    if per_unit is not None and (stamps[1:] - stamps[:-1]).max() <= step // _MICROSECOND * per_unit:
        return _NO_GAPS
    gaps, largest = _gaps(index, step)
    return f"{gaps} gaps, largest {largest}"


def open_time(index: pd.DatetimeIndex, position: int) -> datetime:
    """`index[position].to_pydatetime()` without boxing a Timestamp (~10 µs in pandas 3) for a UTC index."""
    if isinstance(index, pd.DatetimeIndex) and index.tz is UTC:
        stamp = int(index.asi8[position])
        scale = _MICROSECONDS_PER.get(index.unit)
        if scale is not None and stamp != NAT and stamp % scale[1] == 0:
            try:
                return _EPOCH + timedelta(microseconds=stamp * scale[0] // scale[1])
            except OverflowError:  # beyond datetime's years: pandas says so in its own words
                pass
    # Another zone or index, NaT, or nanoseconds to_pydatetime drops with a warning: pandas' own conversion.
    return index[position].to_pydatetime()


def _price_faults(o: np.ndarray, h: np.ndarray, l: np.ndarray, c: np.ndarray, volume: np.ndarray) -> tuple[int, int, int, int]:
    """Candles (with NaN/inf, non-positive prices or volume, high < low, open/close outside high..low)."""
    finite = np.isfinite(o) & np.isfinite(h) & np.isfinite(l) & np.isfinite(c)
    bad_numbers = int((~finite).sum() + (~np.isfinite(volume)).sum())
    with np.errstate(invalid="ignore"):
        non_positive = int(((o <= 0) | (h <= 0) | (l <= 0) | (c <= 0)).sum() + (volume < 0).sum())
        inverted = int((h < l).sum())
        outside = int(((o > h) | (o < l) | (c > h) | (c < l)).sum())
    return bad_numbers, non_positive, inverted, outside


def _sound(ohlcv: np.ndarray) -> bool:
    """Whether none of `_price_faults` can count a candle: a handful of whole-block operations instead of ~30
    per-column ones (and, like those, none that warns: a sum could overflow)."""
    if not np.isfinite(ohlcv).all():
        return False
    low, high, volume = ohlcv[:, 2], ohlcv[:, 1], ohlcv[:, 4]
    # Open and close (columns 0 and 3) within low..high also puts high above low and, with low > 0, every price above 0.
    open_close = ohlcv[:, 0::3]
    return bool(
        low.min() > 0 and volume.min() >= 0 and (open_close <= high[:, None]).all() and (open_close >= low[:, None]).all()
    )


def inspect(
    candles: pd.DataFrame,
    timeframe: str,
    clock: datetime,
    *,
    min_candles: int,
    prefix: str = "",
    candle_checks: list[Check] | None = None,
) -> list[Check]:
    """One check per rule; a failed check means the timeframe cannot be trusted. `prefix` starts every check's name.

    `candle_checks`: `frame_checks` of these candles computed before (they do not depend on the clock), not changed here.
    """
    checks = frame_checks(candles, timeframe, min_candles=min_candles, prefix=prefix) if candle_checks is None else candle_checks
    return checks + [fresh_check(candles, timeframe, clock, prefix=prefix)] if len(candles) else checks


def frame_checks(candles: pd.DataFrame, timeframe: str, *, min_candles: int, prefix: str = "") -> list[Check]:
    """`inspect`'s checks of the candles themselves: all but freshness, which depends on the clock."""
    ohlcv = adjacent_columns(candles, *OHLCV)
    if ohlcv is None:
        o, h, l, c, volume = column_arrays(candles, *OHLCV)
    else:
        o, h, l, c, volume = ohlcv.T
    count = len(candles)
    checks = [Check(name=f"{prefix}enough_candles", passed=count >= min_candles, detail=f"{count} of {min_candles} needed")]
    if count == 0:
        return checks
    if ohlcv is not None and _sound(ohlcv):
        bad_numbers = non_positive = inverted = outside = 0
    else:
        bad_numbers, non_positive, inverted, outside = _price_faults(o, h, l, c, volume)
    checks.append(Check(name=f"{prefix}finite_values", passed=bad_numbers == 0, detail=f"{bad_numbers} candles with NaN/inf"))
    checks.append(Check(name=f"{prefix}positive_prices", passed=non_positive == 0, detail=f"{non_positive} candles"))
    checks.append(Check(name=f"{prefix}high_above_low", passed=inverted == 0, detail=f"{inverted} candles with high < low"))
    checks.append(Check(name=f"{prefix}open_close_in_range", passed=outside == 0, detail=f"{outside} candles"))
    # Gaps are reported, not fatal: exchanges have maintenance windows.
    checks.append(Check(name=f"{prefix}gaps", passed=True, detail=_gaps_detail(candles.index, period(timeframe))))
    return checks


def fresh_check(candles: pd.DataFrame, timeframe: str, clock: datetime, *, prefix: str = "") -> Check:
    """A healthy feed's newest closed candle opened between one and two periods before the clock (candles not empty)."""
    age = as_utc(clock) - open_time(candles.index, -1)
    return Check(name=f"{prefix}fresh", passed=age <= 2 * period(timeframe), detail=f"last candle opened {age} before the clock")
