"""Data-quality rules for one timeframe's candles.

`normalize` repairs what can be repaired without inventing data (order,
duplicates); `inspect` reports what must stop the run.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from state.sections import Check
from tools.indicators import column_arrays
from tools.timeframes import as_utc, period


def normalize(candles: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Sorted, de-duplicated candles and a note for every repair made."""
    repairs: list[str] = []
    frame = candles
    if not frame.index.is_monotonic_increasing:
        frame = frame.sort_index()
        repairs.append("sorted out-of-order candles")
    duplicated = frame.index.duplicated(keep="last")
    if duplicated.any():
        frame = frame[~duplicated]
        repairs.append(f"dropped {int(duplicated.sum())} duplicate candles")
    return frame, repairs


def _gaps(index: pd.DatetimeIndex, step: timedelta) -> tuple[int, pd.Timedelta]:
    """(how many gaps between consecutive candles exceed one period, the largest of them)."""
    # Integer stamps viewed as numpy timedeltas in the index's own unit: no per-candle Timestamp objects.
    diffs = np.diff(index.asi8).view(f"m8[{index.unit}]")
    missing = diffs[diffs > np.timedelta64(step)]
    return len(missing), pd.Timedelta(missing.max()) if len(missing) else pd.Timedelta(0)


def inspect(candles: pd.DataFrame, timeframe: str, clock: datetime, *, min_candles: int) -> list[Check]:
    """One check per rule; a failed check means the timeframe cannot be trusted."""
    o, h, l, c, volume = column_arrays(candles, "open", "high", "low", "close", "volume")
    checks = [Check(name="enough_candles", passed=len(candles) >= min_candles, detail=f"{len(candles)} of {min_candles} needed")]
    if len(candles) == 0:
        return checks
    finite = np.isfinite(o) & np.isfinite(h) & np.isfinite(l) & np.isfinite(c)
    bad_numbers = int((~finite).sum() + (~np.isfinite(volume)).sum())
    checks.append(Check(name="finite_values", passed=bad_numbers == 0, detail=f"{bad_numbers} candles with NaN/inf"))
    with np.errstate(invalid="ignore"):
        non_positive = int(((o <= 0) | (h <= 0) | (l <= 0) | (c <= 0)).sum() + (volume < 0).sum())
        inverted = int((h < l).sum())
        outside = int(((o > h) | (o < l) | (c > h) | (c < l)).sum())
    checks.append(Check(name="positive_prices", passed=non_positive == 0, detail=f"{non_positive} candles"))
    checks.append(Check(name="high_above_low", passed=inverted == 0, detail=f"{inverted} candles with high < low"))
    checks.append(Check(name="open_close_in_range", passed=outside == 0, detail=f"{outside} candles"))
    step = period(timeframe)
    gaps, largest = _gaps(candles.index, step)
    # Gaps are reported, not fatal: exchanges have maintenance windows.
    checks.append(Check(name="gaps", passed=True, detail=f"{gaps} gaps, largest {largest}"))
    # A healthy feed's newest closed candle opened between one and two periods ago.
    age = as_utc(clock) - candles.index[-1].to_pydatetime()
    checks.append(Check(name="fresh", passed=age <= 2 * step, detail=f"last candle opened {age} before the clock"))
    return checks
