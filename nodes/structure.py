"""L2 market structure: confirmed swing pivots, the HH/HL/LH/LL sequence, bias and breaks."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from nodes.common import event, services
from state import AnalysisState
from state.sections import Bias, FeaturesSection, StructureReport, TimeframeStructure
from tools.context import Services
from tools.frames import IndicatorFrame
from tools.pivots import labels_of, pivot_rows
from tools.indicators import column_arrays

NODE = "structure"


def describe(loaded: IndicatorFrame) -> TimeframeStructure:
    high, low, closes = column_arrays(loaded.frame, "high", "low", "close")
    pivots = pivot_rows(high, low)  # arrays: the pivots' times are not needed here
    labels = labels_of(pivots.is_high.tolist(), pivots.prices.tolist())
    highs, lows = pivots.prices[pivots.is_high], pivots.prices[~pivots.is_high]
    last_high = float(highs[-1]) if len(highs) else None
    last_low = float(lows[-1]) if len(lows) else None
    last_high_label = next((x for x in reversed(labels) if x in ("HH", "LH", "EH")), None)
    last_low_label = next((x for x in reversed(labels) if x in ("HL", "LL", "EL")), None)
    bias: Bias = "NEUTRAL"
    if last_high_label == "HH" and last_low_label == "HL":
        bias = "BULLISH"
    elif last_high_label == "LH" and last_low_label == "LL":
        bias = "BEARISH"
    close = float(closes[-1])
    bos = "UP" if last_high is not None and close > last_high else None
    if last_low is not None and close < last_low:
        bos = "DOWN"
    return TimeframeStructure(
        bias=bias, sequence=labels[-6:], last_swing_high=last_high, last_swing_low=last_low, break_of_structure=bos
    )


async def structure(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    request, market = state["request"], state["market"]
    frames = services(runtime, request).frames
    by_timeframe = {
        tf: describe(await frames.get(request.symbol, tf, market.as_of)) for tf in market.timeframes
    }
    report = StructureReport(as_of=market.as_of, produced_by=NODE, by_timeframe=by_timeframe)
    detail = {tf: s.bias for tf, s in by_timeframe.items()}
    return {
        "features": FeaturesSection(structure=report),
        "audit": [event(NODE, "ANALYSIS_UPDATE", "MAPPED", market.as_of, detail)],
    }
