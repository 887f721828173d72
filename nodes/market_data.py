"""L1 market data: every configured timeframe's candles up to the run's clock.

A timeframe that cannot support its indicators (too little history, or not
obtainable) is dropped from the run with the reason; the run holds only when
the decision timeframe itself is lost.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime

from nodes.common import end_run, event, services
from state import AnalysisState
from state.sections import CandleSummary, MarketSection
from tools.context import Services
from tools.frames import IndicatorFrame
from tools.indicators import MIN_CANDLES, column_arrays
from tools.market_data import MarketDataError, UnknownSymbol
from tools.quality import open_time

NODE = "market_data"


def summarize(item: IndicatorFrame) -> CandleSummary:
    frame = item.frame
    # From the index's integers and the frame's float block: a Timestamp or a Series per value costs 10-30 µs.
    count, first, last = len(frame), open_time(frame.index, 0), open_time(frame.index, -1)
    (close,) = column_arrays(frame, "close")
    return CandleSummary(count=count, first=first, last=last, last_close=float(close[-1]))


async def market_data(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    request = state["request"]
    clock = state["sanity"].as_of
    frames = services(runtime, request).frames
    results = await asyncio.gather(
        *(frames.get(request.symbol, tf, clock) for tf in request.timeframes), return_exceptions=True
    )
    summaries: dict[str, CandleSummary] = {}
    dropped: dict[str, str] = {}
    for timeframe, result in zip(request.timeframes, results, strict=True):
        if isinstance(result, UnknownSymbol):
            return end_run(NODE, "REJECT", str(result), clock, kind="MARKET_DATA")
        if isinstance(result, MarketDataError):
            dropped[timeframe] = str(result)
        elif isinstance(result, BaseException):  # fail closed, and say what broke
            reason = f"could not load {timeframe} candles: {type(result).__name__}: {result}"
            return end_run(NODE, "HOLD", reason, clock, kind="MARKET_DATA")
        elif len(result.frame) < MIN_CANDLES:
            dropped[timeframe] = f"{len(result.frame)} candles up to {clock:%Y-%m-%d %H:%M}, indicators need {MIN_CANDLES}"
        else:
            summaries[timeframe] = result.derive(NODE, summarize)
    if request.decision_timeframe in dropped:
        reason = f"decision timeframe {request.decision_timeframe} unusable: {dropped[request.decision_timeframe]}"
        return end_run(NODE, "HOLD", reason, clock, kind="MARKET_DATA", detail={"dropped": dropped})
    section = MarketSection(
        as_of=clock,
        produced_by=NODE,
        symbol=request.symbol,
        exchange=request.exchange,
        source=frames.source_name,
        scenario=request.scenario,
        timeframes=summaries,
        dropped=dropped,
        last_price=summaries[next(iter(summaries))].last_close,
    )
    detail = {"candles": {tf: s.count for tf, s in summaries.items()}, "dropped": dropped}
    return {"market": section, "audit": [event(NODE, "MARKET_DATA", "LOADED", clock, detail)]}
