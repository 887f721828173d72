"""L3 Fibonacci retracements of each timeframe's last impulse, with the golden pocket (66.6 %–70.6 %)."""

from __future__ import annotations

from typing import Any

import numpy as np
from langgraph.runtime import Runtime

from nodes.common import event, services
from state import AnalysisState
from state.sections import FibonacciLevels, FibonacciReport, LevelsSection
from tools.context import Services
from tools.frames import IndicatorFrame
from tools.pivots import extremes
from tools.indicators import column_arrays

NODE = "fibonacci"
RATIOS = (0.236, 0.382, 0.5, 0.618, 0.786)
GOLDEN_POCKET = (0.666, 0.706)
PIVOT_WIDTH = 3


def retracement(swing_low: float, swing_high: float, up: bool, ratio: float) -> float:
    """Price that retraces `ratio` of the impulse, measured back from its end."""
    span = swing_high - swing_low
    return swing_high - ratio * span if up else swing_low + ratio * span


def impulse_levels(loaded: IndicatorFrame) -> FibonacciLevels | None:
    """The impulse between the last confirmed swing high and low, or None before both exist."""
    highs, lows, closes = column_arrays(loaded.frame, "high", "low", "close")
    # The swing highs and lows apart, as pivot_rows finds them: only the last of each is needed, not their order.
    if len(highs) < 2 * PIVOT_WIDTH + 1:
        return None
    tops, bottoms = extremes(highs, PIVOT_WIDTH, np.greater), extremes(lows, PIVOT_WIDTH, np.less)
    if not len(tops) or not len(bottoms):
        return None
    return levels_between(highs, lows, float(closes[-1]), int(tops[-1]), int(bottoms[-1]))


def levels_between(highs: np.ndarray, lows: np.ndarray, price: float, top: int, bottom: int) -> FibonacciLevels:
    """The retracements of the impulse between the swing high at `top` and the swing low at `bottom`."""
    high, low = float(highs[top]), float(lows[bottom])
    up = top > bottom  # the impulse ran from the older swing to the newer one
    pocket = sorted(retracement(low, high, up, r) for r in GOLDEN_POCKET)
    return FibonacciLevels(
        swing_low=low,
        swing_high=high,
        direction="UP" if up else "DOWN",
        retracements={f"{r:.3f}": retracement(low, high, up, r) for r in RATIOS},
        golden_pocket=(pocket[0], pocket[1]),
        in_golden_pocket=pocket[0] <= price <= pocket[1],
    )


async def fibonacci(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    request, market = state["request"], state["market"]
    frames = services(runtime, request).frames
    by_timeframe = {}
    for tf in market.timeframes:
        levels = (await frames.get(request.symbol, tf, market.as_of)).derive(NODE, impulse_levels)
        if levels is not None:
            by_timeframe[tf] = levels
    report = FibonacciReport(as_of=market.as_of, produced_by=NODE, by_timeframe=by_timeframe)
    pocket = sorted(tf for tf, levels in by_timeframe.items() if levels.in_golden_pocket)
    verdict = f"IN_GOLDEN_POCKET {','.join(pocket)}" if pocket else "MAPPED"
    return {"levels": LevelsSection(fibonacci=report), "audit": [event(NODE, "ANALYSIS_UPDATE", verdict, market.as_of)]}
