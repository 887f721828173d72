"""Calendar key levels from daily candles: period opens and the previous periods' extremes.

Definitions (all calendar aligned in UTC, as exchanges align them):

- day = 00:00-24:00 UTC, week = Monday 00:00 UTC + 7 days, month = 1st 00:00 UTC to the next 1st.
- The *current* day / week / month is the one containing the frame's LAST candle. Frames hold
  closed candles only, so at 13:37 on a Friday the current day is Thursday (the newest closed one).
- ``daily_open`` / ``weekly_open`` / ``monthly_open``: the open of the first day of the current
  period, reported only when that day's candle is in the frame (a week whose Monday is missing
  has no known open).
- ``prev_day_*`` / ``prev_week_*`` / ``prev_month_*`` high and low: extremes of the previous
  period, reported only when EVERY day of that period is in the frame, so a partial week or month
  at the start of the data (or one with a hole) never poses as a full one.

Only candles at or before the row being described are used: :func:`level_history` row t equals
the levels computed on the frame truncated at t (tested).
"""

from __future__ import annotations

import math
from datetime import date
from typing import Literal

import numpy as np
import pandas as pd

from state.analysis import KeyLevel
from tools.indicators import column_arrays

AT_TOLERANCE_PCT = 0.05  # |distance| within this many percent counts as "at" the level
_DAY_NS = pd.Timedelta(days=1).value
OPENS = ("daily_open", "weekly_open", "monthly_open")
EXTREMES = ("prev_day_high", "prev_day_low", "prev_week_high", "prev_week_low", "prev_month_high", "prev_month_low")
LEVEL_NAMES = OPENS + EXTREMES
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()  # day number 0 as a proleptic Gregorian ordinal


def day_index(daily: pd.DataFrame) -> pd.DatetimeIndex:
    """The frame's open times in UTC, checked to be distinct midnights (one candle per day)."""
    index = pd.DatetimeIndex(daily.index)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    day_numbers(index)  # the checks
    return index


def day_numbers(index: pd.Index) -> np.ndarray:
    """Days since 1970-01-01 of daily open times, checked to be distinct UTC midnights in order.

    Calendar arithmetic on these integers (numpy's datetime64[D] / [M]) replaces pandas' DatetimeIndex
    methods, which cost ~50 us a call on a frame of a few hundred days.
    """
    return days_of(pd.DatetimeIndex(index).as_unit("ns").asi8)  # UTC-based for an aware index; naive is taken as UTC


def days_of(ns: np.ndarray) -> np.ndarray:
    """`day_numbers` of open times given as nanoseconds since the epoch (UTC), with the same checks."""
    if np.any(ns % _DAY_NS):
        raise ValueError("daily candles must open at 00:00 UTC")
    if np.any(np.diff(ns) <= 0):
        raise ValueError("daily candles must be sorted with one candle per day")
    return ns // _DAY_NS


def _lookup(keys: np.ndarray, values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """values[keys == query] for each query (keys sorted, distinct, non-empty), NaN where absent."""
    where = np.clip(np.searchsorted(keys, queries), 0, len(keys) - 1)
    return np.where(keys[where] == queries, values[where], np.nan)


def _complete_extremes(
    starts: np.ndarray, lengths: np.ndarray, high: np.ndarray, low: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per period (distinct sorted ``starts``): its start, high and low, NaN unless complete.

    ``lengths`` is each row's period length in days. Complete = as many candles as the period has
    days (one per day, checked by :func:`day_numbers`) and no NaN among them: a skipped NaN would give
    a level the data does not support. ufunc.reduceat propagates NaN, so it shows up here.
    """
    first = np.flatnonzero(np.concatenate(([True], starts[1:] != starts[:-1])))
    count = np.diff(np.append(first, len(starts)))
    period_high = np.maximum.reduceat(high, first)
    period_low = np.minimum.reduceat(low, first)
    complete = (count == lengths[first]) & np.isfinite(period_high) & np.isfinite(period_low)
    return starts[first], np.where(complete, period_high, np.nan), np.where(complete, period_low, np.nan)


def _history(days: np.ndarray, opens: np.ndarray, highs: np.ndarray, lows: np.ndarray) -> dict[str, np.ndarray]:
    """`level_history`'s columns for daily candles at `day_numbers` ``days`` (at least one)."""
    months = days.astype("datetime64[D]").astype("datetime64[M]")
    month = months.astype("datetime64[D]").astype(np.int64)  # the 1st of each day's month
    days_in_month = (months + 1).astype("datetime64[D]").astype(np.int64) - month
    prev_month = (months - 1).astype("datetime64[D]").astype(np.int64)  # the 1st of the month before
    week = days - (days + 3) % 7  # Monday: 1970-01-01 (day 0) was a Thursday
    weeks, week_high, week_low = _complete_extremes(week, np.full(len(days), 7), highs, lows)
    starts, month_high, month_low = _complete_extremes(month, days_in_month, highs, lows)
    prev_day, prev_week = days - 1, week - 7
    return {
        "daily_open": opens,
        "weekly_open": _lookup(days, opens, week),
        "monthly_open": _lookup(days, opens, month),
        "prev_day_high": _lookup(days, highs, prev_day),
        "prev_day_low": _lookup(days, lows, prev_day),
        "prev_week_high": _lookup(weeks, week_high, prev_week),
        "prev_week_low": _lookup(weeks, week_low, prev_week),
        "prev_month_high": _lookup(starts, month_high, prev_month),
        "prev_month_low": _lookup(starts, month_low, prev_month),
    }


def latest_levels(days: np.ndarray, opens: np.ndarray, highs: np.ndarray, lows: np.ndarray) -> list[float]:
    """`_history`'s last row, in LEVEL_NAMES order: the same candles' values, found for that one day only.

    A run needs only the newest row; the whole history's calendar arithmetic and per-period
    reductions cost ~10x more than these few lookups. ``days``: `day_numbers` (sorted, distinct).
    """
    last = int(days[-1])
    week = last - (last + 3) % 7  # Monday: 1970-01-01 (day 0) was a Thursday
    month = last - date.fromordinal(_EPOCH_ORDINAL + last).day + 1  # the 1st of the last day's month
    prev_month = month - date.fromordinal(_EPOCH_ORDINAL + month - 1).day  # the 1st of the month before
    # Each day's row, and the bounds of the previous week's and month's rows (days are one per day, in order).
    at_week, at_month, at_prev_day, week_from, month_from = np.searchsorted(
        days, [week, month, last - 1, week - 7, prev_month]
    ).tolist()
    n, nan = len(days), float("nan")

    def on(row: int, day: int, values: np.ndarray) -> float:
        return float(values[row]) if row < n and days[row] == day else nan

    def extremes(first: int, end: int, length: int) -> tuple[float, float]:
        """High and low of rows first..end-1 when they are the whole period and hold no NaN (max/min propagate it)."""
        if end - first != length:
            return nan, nan
        high, low = float(np.maximum.reduce(highs[first:end])), float(np.minimum.reduce(lows[first:end]))
        return (high, low) if math.isfinite(high) and math.isfinite(low) else (nan, nan)

    return [
        float(opens[-1]),
        on(at_week, week, opens),
        on(at_month, month, opens),
        on(at_prev_day, last - 1, highs),
        on(at_prev_day, last - 1, lows),
        *extremes(week_from, at_week, 7),
        *extremes(month_from, at_month, month - prev_month),
    ]


def level_history(daily: pd.DataFrame) -> pd.DataFrame:
    """One row per daily candle: the key levels as known at that candle's close (NaN = unknown).

    Every column of row t reads only candles at or before t: opens of days <= t, and extremes of
    periods that ended before t's period began.
    """
    index = day_index(daily)
    if len(index) == 0:
        return pd.DataFrame(columns=list(LEVEL_NAMES), index=index, dtype=float)
    opens, highs, lows = (daily[c].to_numpy(float) for c in ("open", "high", "low"))
    return pd.DataFrame(_history(day_numbers(index), opens, highs, lows), index=index, columns=list(LEVEL_NAMES))


Position = Literal["above", "below", "at"]


def relate(last_price: float, level: float, tolerance_pct: float = AT_TOLERANCE_PCT) -> tuple[Position, float]:
    """Where the last price sits relative to a level, and (last - level) / level in percent."""
    distance = (last_price - level) / level * 100
    if abs(distance) <= tolerance_pct:
        return "at", distance
    return ("above" if distance > 0 else "below"), distance


def key_levels(daily: pd.DataFrame, last_price: float | None = None) -> list[KeyLevel]:
    """The known key levels at the frame's last candle, relative to ``last_price``.

    ``last_price`` defaults to the last daily close; a caller with a fresher price (a smaller
    timeframe's close at the same clock) passes it. Unknown levels are left out, never guessed.
    """
    if daily.empty:
        return []
    opens, highs, lows, closes = column_arrays(daily, "open", "high", "low", "close")
    return levels_of(daily.index, opens, highs, lows, float(closes[-1]) if last_price is None else last_price)


def levels_of(
    index: pd.Index, opens: np.ndarray, highs: np.ndarray, lows: np.ndarray, last_price: float
) -> list[KeyLevel]:
    """`key_levels` of daily candles given as their open times and columns (at least one candle)."""
    return levels_on_days(day_numbers(index), opens, highs, lows, last_price)


def levels_on_days(
    days: np.ndarray, opens: np.ndarray, highs: np.ndarray, lows: np.ndarray, last_price: float
) -> list[KeyLevel]:
    """`levels_of` of daily candles given as their `day_numbers`."""
    price = float(last_price)
    if not np.isfinite(price) or price <= 0:
        return []
    levels: list[KeyLevel] = []
    for name, value in zip(LEVEL_NAMES, latest_levels(days, opens, highs, lows), strict=True):
        if math.isfinite(value) and value > 0:
            position, distance = relate(price, value)
            levels.append(KeyLevel(name=name, price=value, position=position, distance_pct=distance))
    return levels
