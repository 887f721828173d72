"""L1 market data: load every configured timeframe's candles up to the run's clock."""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime

from nodes.common import end_run, event, services
from state import AnalysisState
from state.sections import CandleSummary, MarketSection
from tools.context import Services
from tools.market_data import MarketDataError

NODE = "market_data"


async def market_data(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    request = state["request"]
    clock = state["sanity"].as_of
    frames = services(runtime, request).frames
    try:
        loaded = await asyncio.gather(
            *(frames.get(request.symbol, tf, clock) for tf in request.timeframes)
        )
    except MarketDataError as error:
        return end_run(NODE, "HOLD", f"market data unavailable: {error}", clock, kind="MARKET_DATA")
    summaries: dict[str, CandleSummary] = {}
    for item in loaded:
        frame = item.frame
        if frame.empty:
            return end_run(NODE, "HOLD", f"no {item.timeframe} candles up to {clock}", clock, kind="MARKET_DATA")
        summaries[item.timeframe] = CandleSummary(
            count=len(frame),
            first=frame.index[0].to_pydatetime(),
            last=frame.index[-1].to_pydatetime(),
            last_close=float(frame["close"].iloc[-1]),
        )
    smallest = request.timeframes[0]
    section = MarketSection(
        as_of=clock,
        produced_by=NODE,
        symbol=request.symbol,
        exchange=request.exchange,
        source=frames.source_name,
        scenario=request.scenario,
        timeframes=summaries,
        last_price=summaries[smallest].last_close,
    )
    detail = {tf: s.count for tf, s in summaries.items()}
    return {"market": section, "audit": [event(NODE, "MARKET_DATA", "LOADED", clock, detail)]}
