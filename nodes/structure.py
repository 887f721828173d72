"""L2 market structure: confirmed swing pivots, the HH/HL/LH/LL sequence, bias and breaks."""

from __future__ import annotations

from typing import Any

import numpy as np
from langgraph.runtime import Runtime

from nodes.common import event, services
from state import AnalysisState
from state.sections import Bias, FeaturesSection, StructureReport, TimeframeStructure
from tools.context import Services
from tools.frames import IndicatorFrame
from tools.pivots import labels_of, pivot_rows
from tools.indicators import column_arrays

NODE = "structure"
SEQUENCE_SHOWN = 6


def newest_labels(is_high: np.ndarray, highs: np.ndarray, lows: np.ndarray, count: int) -> list[str]:
    """`labels_of(...)[-count:]` of pivots given as their kinds and the prices of their highs and lows.

    Every pivot but the first high and the first low is labelled against the previous one of its kind,
    so the newest `count` labels belong to at most the newest count + 2 pivots: only those are walked
    (newest first), not the ~90 pivots of a frame.
    """
    # Enough of each kind's newest prices that every walked pivot finds its previous one (or has none).
    reach = count + 3
    high_prices, low_prices = highs[-reach:].tolist(), lows[-reach:].tolist()
    h, lo = len(high_prices) - 1, len(low_prices) - 1  # the walked pivot's place among its kind's prices
    found: list[str] = []
    for high in reversed(is_high[-(count + 2) :].tolist()):
        if high:
            if h > 0:
                found += labels_of([True, True], high_prices[h - 1 : h + 1])
            h -= 1
        else:
            if lo > 0:
                found += labels_of([False, False], low_prices[lo - 1 : lo + 1])
            lo -= 1
        if len(found) == count:
            break
    return found[::-1]


def describe(loaded: IndicatorFrame) -> TimeframeStructure:
    high, low, closes = column_arrays(loaded.frame, "high", "low", "close")
    pivots = pivot_rows(high, low)  # arrays: the pivots' times are not needed here
    highs, lows = pivots.prices[pivots.is_high], pivots.prices[~pivots.is_high]
    last_high = float(highs[-1]) if len(highs) else None
    last_low = float(lows[-1]) if len(lows) else None
    sequence = newest_labels(pivots.is_high, highs, lows, SEQUENCE_SHOWN)
    # The newest high's (low's) label, when it has a previous one to be labelled against.
    last_high_label = labels_of([True, True], highs[-2:].tolist())[0] if len(highs) > 1 else None
    last_low_label = labels_of([False, False], lows[-2:].tolist())[0] if len(lows) > 1 else None
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
        bias=bias, sequence=sequence, last_swing_high=last_high, last_swing_low=last_low, break_of_structure=bos
    )


async def structure(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    request, market = state["request"], state["market"]
    frames = services(runtime, request).frames
    by_timeframe = {
        tf: (await frames.get(request.symbol, tf, market.as_of)).derive(NODE, describe) for tf in market.timeframes
    }
    report = StructureReport(as_of=market.as_of, produced_by=NODE, by_timeframe=by_timeframe)
    detail = {tf: s.bias for tf, s in by_timeframe.items()}
    return {
        "features": FeaturesSection(structure=report),
        "audit": [event(NODE, "ANALYSIS_UPDATE", "MAPPED", market.as_of, detail)],
    }
