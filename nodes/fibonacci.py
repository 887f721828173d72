"""L3 Fibonacci retracements of the last impulse on the decision timeframe, with the golden pocket."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from nodes.common import event, services
from state import AnalysisState
from state.sections import FibonacciReport, LevelsSection
from tools.context import Services
from tools.pivots import swing_pivots

NODE = "fibonacci"
RATIOS = (0.236, 0.382, 0.5, 0.618, 0.786)
GOLDEN_POCKET = (0.666, 0.706)


def retracement(swing_low: float, swing_high: float, up: bool, ratio: float) -> float:
    """Price that retraces `ratio` of the impulse, measured back from its end."""
    span = swing_high - swing_low
    return swing_high - ratio * span if up else swing_low + ratio * span


async def fibonacci(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    request, market = state["request"], state["market"]
    timeframe = request.decision_timeframe
    loaded = await services(runtime, request).frames.get(request.symbol, timeframe, market.as_of)
    frame = loaded.frame
    pivots = swing_pivots(frame["high"], frame["low"], width=3)
    highs = [p for p in pivots if p.kind == "high"]
    lows = [p for p in pivots if p.kind == "low"]
    if not highs or not lows:
        return {"audit": [event(NODE, "ANALYSIS_UPDATE", "NO_IMPULSE", market.as_of)]}
    high, low = highs[-1], lows[-1]
    up = high.position > low.position  # the impulse ran from the older swing to the newer one
    levels = {f"{r:.3f}": retracement(low.price, high.price, up, r) for r in RATIOS}
    pocket = sorted(retracement(low.price, high.price, up, r) for r in GOLDEN_POCKET)
    price = float(frame["close"].iloc[-1])
    report = FibonacciReport(
        as_of=market.as_of,
        produced_by=NODE,
        timeframe=timeframe,
        swing_low=low.price,
        swing_high=high.price,
        direction="UP" if up else "DOWN",
        retracements=levels,
        golden_pocket=(pocket[0], pocket[1]),
        in_golden_pocket=pocket[0] <= price <= pocket[1],
    )
    verdict = "IN_GOLDEN_POCKET" if report.in_golden_pocket else "MAPPED"
    return {"levels": LevelsSection(fibonacci=report), "audit": [event(NODE, "ANALYSIS_UPDATE", verdict, market.as_of)]}
