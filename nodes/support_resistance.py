"""L3 support and resistance from candle bodies (not wicks), ranked by touches and recency."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from nodes.common import event, services
from state import AnalysisState
from state.sections import LevelsSection, PriceLevel, SupportResistanceReport
from tools.context import Services
from tools.frames import IndicatorFrame
from tools.pivots import cluster_prices, swing_pivots

NODE = "support_resistance"
MAX_LEVELS = 8
TOLERANCE_ATR = 0.5


def body_levels(loaded: IndicatorFrame) -> list[PriceLevel]:
    frame = loaded.frame
    body_high = frame[["open", "close"]].max(axis=1)
    body_low = frame[["open", "close"]].min(axis=1)
    # Pivots found on the bodies, so a single wick spike does not make a level.
    pivots = swing_pivots(body_high, body_low)
    atr = float(frame["atr"].iloc[-1])
    clusters = cluster_prices([p.price for p in pivots], [p.position for p in pivots], TOLERANCE_ATR * atr)
    n = len(frame)
    ranked = sorted(clusters, key=lambda c: c.touches + c.last_position / n, reverse=True)[:MAX_LEVELS]
    close = float(frame["close"].iloc[-1])
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
        levels += body_levels(await frames.get(request.symbol, tf, market.as_of))
    report = SupportResistanceReport(as_of=market.as_of, produced_by=NODE, levels=levels)
    return {
        "levels": LevelsSection(support_resistance=report),
        "audit": [event(NODE, "ANALYSIS_UPDATE", f"{len(levels)} levels", market.as_of)],
    }
