"""L2 key levels: the current day / week / month opens and the previous periods' highs and lows.

Daily candles come from the run's "1d" frame when it has one; otherwise the largest timeframe
below a day is aggregated into complete UTC days (4h -> 1d), which gives fewer days and so
possibly fewer levels: only what those days support is reported (see :mod:`tools.key_levels`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from langgraph.runtime import Runtime

from nodes.common import event, services
from state import AnalysisState
from state.analysis import FeaturesSection, KeyLevelsReport
from tools.context import Services
from tools.key_levels import key_levels as compute_levels
from tools.resample import COLUMNS, resample
from tools.timeframes import period

NODE = "key_levels"
DAILY = "1d"
NO_SOURCE = "none"  # no timeframe at or below a day: no calendar day can be built


def daily_source(timeframes: list[str]) -> str | None:
    """"1d" when present, else the largest timeframe below a day that divides it, else None."""
    if DAILY in timeframes:
        return DAILY
    day = period(DAILY)
    smaller = [tf for tf in timeframes if period(tf) < day and day % period(tf) == pd.Timedelta(0)]
    return max(smaller, key=period) if smaller else None


def daily_candles(frame: pd.DataFrame, source_tf: str) -> pd.DataFrame:
    """Complete UTC daily candles; a forming or gappy day is dropped by the resampler, not guessed."""
    if source_tf == DAILY:
        return frame[COLUMNS]
    return resample(frame[COLUMNS], source_tf, DAILY)


def with_forming_day(daily: pd.DataFrame, smallest: pd.DataFrame) -> pd.DataFrame:
    """Daily candles plus today's candle so far, built from the smallest timeframe's closed candles.

    Without it "today's open" would be yesterday's: the 1d frame only holds closed days.
    The forming day uses closed candles only, so nothing after the clock leaks in.
    """
    if smallest.empty:
        return daily
    today = smallest.index[-1].floor("D")
    if len(daily) and daily.index[-1] >= today:
        return daily
    part = smallest.loc[smallest.index >= today, COLUMNS]
    if part.empty:
        return daily
    candle = pd.DataFrame(
        {"open": [part["open"].iloc[0]], "high": [part["high"].max()], "low": [part["low"].min()],
         "close": [part["close"].iloc[-1]], "volume": [part["volume"].sum()]},
        index=pd.DatetimeIndex([today], name=daily.index.name),
    )
    return pd.concat([daily, candle])


async def key_levels(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    request, market = state["request"], state["market"]
    source_tf = daily_source(list(market.timeframes))
    levels = []
    if source_tf is not None:
        frames = services(runtime, request).frames
        loaded = await frames.get(request.symbol, source_tf, market.as_of)
        smallest = await frames.get(request.symbol, next(iter(market.timeframes)), market.as_of)
        daily = with_forming_day(daily_candles(loaded.frame, source_tf), smallest.frame)
        # market.last_price is the smallest timeframe's close at the same clock: the freshest known price.
        levels = compute_levels(daily, market.last_price)
    report = KeyLevelsReport(
        as_of=market.as_of, produced_by=NODE, source_timeframe=source_tf or NO_SOURCE, levels=levels
    )
    verdict = "MAPPED" if levels else "NO_LEVELS"
    detail = {"source_timeframe": report.source_timeframe, **{lv.name: lv.position for lv in levels}}
    return {
        "features": FeaturesSection(key_levels=report),
        "audit": [event(NODE, "ANALYSIS_UPDATE", verdict, market.as_of, detail)],
    }
