"""L3 support and resistance from candle bodies (not wicks), ranked by touches and recency."""

from __future__ import annotations

from typing import Any

import numpy as np
from langgraph.runtime import Runtime

from nodes.common import event, services
from state import AnalysisState
from state.sections import LevelsSection, PriceLevel, SupportResistanceReport
from tools.context import Services
from tools.frames import IndicatorFrame
from tools.pivots import cluster_prices, pivot_rows
from tools.indicators import column_arrays

NODE = "support_resistance"
MAX_LEVELS = 8
TOLERANCE_ATR = 0.5


def body_levels(loaded: IndicatorFrame) -> list[PriceLevel]:
    opens, closes, atrs = column_arrays(loaded.frame, "open", "close", "atr")
    # fmax/fmin skip a NaN side as DataFrame.max/min(axis=1) do, without building a frame per call.
    body_high, body_low = np.fmax(opens, closes), np.fmin(opens, closes)
    # Pivots found on the bodies, so a single wick spike does not make a level.
    pivots = pivot_rows(body_high, body_low)
    atr = float(atrs[-1])
    clusters = cluster_prices(pivots.prices.tolist(), pivots.positions.tolist(), TOLERANCE_ATR * atr)
    n = len(closes)
    ranked = sorted(clusters, key=lambda c: c.touches + c.last_position / n, reverse=True)[:MAX_LEVELS]
    close = float(closes[-1])
    return [
        PriceLevel(
            price=c.price,
            kind="support" if c.price < close else "resistance",
            strength=round(c.touches + c.last_position / n, 3),
            timeframe=loaded.timeframe,
        )
        for c in ranked
    ]


async def support_resistance(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    request, market = state["request"], state["market"]
    frames = services(runtime, request).frames
    levels: list[PriceLevel] = []
    for tf in market.timeframes:
        levels += (await frames.get(request.symbol, tf, market.as_of)).derive(NODE, body_levels)
    report = SupportResistanceReport(as_of=market.as_of, produced_by=NODE, levels=levels)
    return {
        "levels": LevelsSection(support_resistance=report),
        "audit": [event(NODE, "ANALYSIS_UPDATE", f"{len(levels)} levels", market.as_of)],
    }
