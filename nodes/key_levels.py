"""L2 key levels: the current day / week / month opens and the previous periods' highs and lows.

Daily candles come from the run's "1d" frame when it has one; otherwise the largest timeframe
below a day is aggregated into complete UTC days (4h -> 1d), which gives fewer days and so
possibly fewer levels: only what those days support is reported (see :mod:`tools.key_levels`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from langgraph.runtime import Runtime

from nodes.common import event, services
from state import AnalysisState
from state.analysis import FeaturesSection, KeyLevel, KeyLevelsReport
from tools.context import Services
from tools.key_levels import days_of, levels_of, levels_on_days
from tools.indicators import column_arrays
from tools.resample import COLUMNS, resample
from tools.timeframes import period

NODE = "key_levels"
DAILY = "1d"
NO_SOURCE = "none"  # no timeframe at or below a day: no calendar day can be built
_UTC_NS = pd.DatetimeTZDtype("ns", "UTC")
_DAY_NS = pd.Timedelta(days=1).value
_NAT = np.iinfo(np.int64).min  # NaT's integer


def daily_source(timeframes: list[str]) -> str | None:
    """"1d" when present, else the largest timeframe below a day that divides it, else None."""
    if DAILY in timeframes:
        return DAILY
    day = period(DAILY)
    smaller = [tf for tf in timeframes if period(tf) < day and day % period(tf) == pd.Timedelta(0)]
    return max(smaller, key=period) if smaller else None


def forming_day(last_day: pd.Timestamp | None, smallest: pd.DataFrame) -> tuple[pd.Timestamp, list[float]] | None:
    """Today's open time and [open, high, low, close, volume] so far, from the smallest timeframe's
    closed candles; None when there are none or the daily candles already reach today.

    Without it "today's open" would be yesterday's: the 1d frame only holds closed days.
    The forming day uses closed candles only, so nothing after the clock leaks in.
    """
    if smallest.empty:
        return None
    today = smallest.index[-1].floor("D")
    if last_day is not None and last_day >= today:
        return None
    today_on = smallest.index >= today
    if not today_on.any():
        return None
    opens, highs, lows, closes, volumes = (c[today_on] for c in column_arrays(smallest, *COLUMNS))
    # fmax/fmin/nansum skip NaN exactly as the pandas max/min/sum they replace.
    return today, [opens[0], np.fmax.reduce(highs), np.fmin.reduce(lows), closes[-1], np.nansum(volumes)]


def with_forming_day(daily: pd.DataFrame, smallest: pd.DataFrame) -> pd.DataFrame:
    """Daily candles plus today's candle so far (see `forming_day`)."""
    forming = forming_day(daily.index[-1] if len(daily) else None, smallest)
    if forming is None:
        return daily
    today, values = forming
    candle = pd.DataFrame(
        {c: [v] for c, v in zip(COLUMNS, values, strict=True)}, index=pd.DatetimeIndex([today], name=daily.index.name)
    )
    return pd.concat([daily, candle])


def daily_levels(loaded: pd.DataFrame, source_tf: str, smallest: pd.DataFrame, last_price: float | None) -> list[KeyLevel]:
    """The key levels of the complete UTC daily candles built from `loaded`, plus today's forming one.

    A forming or gappy day is dropped by the resampler, not guessed. On arrays rather than a
    concatenated frame: selecting, building and joining frames cost more than the levels themselves.
    """
    daily = loaded if source_tf == DAILY else resample(loaded[COLUMNS], source_tf, DAILY)
    index = daily.index
    opens, highs, lows, closes = column_arrays(daily, "open", "high", "low", "close")
    if _utc_ns(index) and _utc_ns(smallest.index):
        return _levels_on_ns(index.asi8, opens, highs, lows, closes, smallest, last_price)
    forming = forming_day(index[-1] if len(index) else None, smallest)
    if forming is not None:
        today, (open_, high, low, close, _) = forming
        index = index.append(pd.DatetimeIndex([today]))
        opens, highs, lows, closes = (np.append(*pair) for pair in ((opens, open_), (highs, high), (lows, low), (closes, close)))
    if len(index) == 0:
        return []
    return levels_of(index, opens, highs, lows, float(closes[-1]) if last_price is None else last_price)


def _utc_ns(index: pd.Index) -> bool:
    """A UTC nanosecond index without NaT at its end: its day arithmetic is integer arithmetic on `asi8`."""
    return (
        isinstance(index, pd.DatetimeIndex)
        and index.dtype == _UTC_NS
        and (len(index) == 0 or int(index.asi8[-1]) != _NAT)
    )


def _levels_on_ns(
    ns: np.ndarray,
    opens: np.ndarray,
    highs: np.ndarray,
    lows: np.ndarray,
    closes: np.ndarray,
    smallest: pd.DataFrame,
    last_price: float | None,
) -> list[KeyLevel]:
    """`daily_levels` once the daily and smallest times are UTC nanoseconds: the same forming day, checks and
    levels, on integers instead of Timestamps and DatetimeIndexes (whose boxing, flooring, comparing and
    appending cost more than the levels)."""
    close = float(closes[-1]) if len(ns) else None
    if not smallest.empty:
        times = smallest.index.asi8
        today = int(times[-1]) - int(times[-1]) % _DAY_NS  # Timestamp.floor("D") of a UTC time
        today_on = times >= today
        if (not len(ns) or int(ns[-1]) < today) and today_on.any():
            # forming_day's candle (all its columns read, as there: a missing one fails alike; the volume is unused).
            opens_on, highs_on, lows_on, closes_on = (c[today_on] for c in column_arrays(smallest, *COLUMNS)[:4])
            ns = np.append(ns, today)
            opens, highs, lows = (
                np.append(opens, opens_on[0]),
                np.append(highs, np.fmax.reduce(highs_on)),
                np.append(lows, np.fmin.reduce(lows_on)),
            )
            close = float(closes_on[-1])
    if not len(ns):
        return []
    return levels_on_days(days_of(ns), opens, highs, lows, close if last_price is None else last_price)


async def key_levels(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    request, market = state["request"], state["market"]
    source_tf = daily_source(list(market.timeframes))
    levels = []
    if source_tf is not None:
        frames = services(runtime, request).frames
        loaded = await frames.get(request.symbol, source_tf, market.as_of)
        smallest = await frames.get(request.symbol, next(iter(market.timeframes)), market.as_of)
        # market.last_price is the smallest timeframe's close at the same clock: the freshest known price.
        levels = daily_levels(loaded.frame, source_tf, smallest.frame, market.last_price)
    report = KeyLevelsReport(
        as_of=market.as_of, produced_by=NODE, source_timeframe=source_tf or NO_SOURCE, levels=levels
    )
    verdict = "MAPPED" if levels else "NO_LEVELS"
    detail = {"source_timeframe": report.source_timeframe, **{lv.name: lv.position for lv in levels}}
    return {
        "features": FeaturesSection(key_levels=report),
        "audit": [event(NODE, "ANALYSIS_UPDATE", verdict, market.as_of, detail)],
    }
