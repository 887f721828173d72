"""L3 confluence map: levels from every analyst merged into scored zones (ATR tolerance)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from nodes.common import event, services
from state import AnalysisState
from state.sections import ConfluenceReport, ConfluenceZone, LevelsSection
from tools.context import Services

NODE = "confluence"
TOLERANCE_ATR = 0.25
MAX_ZONES = 10


def collect(state: AnalysisState) -> list[tuple[float, float, str]]:
    """(price, weight, contributor) for every level the analysts produced."""
    levels, features = state.get("levels") or LevelsSection(), state.get("features")
    found: list[tuple[float, float, str]] = []
    if levels.support_resistance:
        found += [(l.price, l.strength, f"body_{l.kind}@{l.timeframe}") for l in levels.support_resistance.levels]
    if levels.fibonacci:
        fib = levels.fibonacci
        found += [(p, 1.0, f"fib_{ratio}@{fib.timeframe}") for ratio, p in fib.retracements.items()]
        found += [(sum(fib.golden_pocket) / 2, 1.5, f"golden_pocket@{fib.timeframe}")]
    if features and features.structure:
        for tf, s in features.structure.by_timeframe.items():
            found += [(p, 1.0, f"swing_{k}@{tf}") for k, p in (("high", s.last_swing_high), ("low", s.last_swing_low)) if p]
    return found


async def confluence(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    request, market = state["request"], state["market"]
    loaded = await services(runtime, request).frames.get(request.symbol, request.decision_timeframe, market.as_of)
    tolerance = TOLERANCE_ATR * float(loaded.frame["atr"].iloc[-1])
    zones: list[ConfluenceZone] = []
    current: list[tuple[float, float, str]] = []
    for item in sorted(collect(state)) + [(float("inf"), 0.0, "")]:
        if current and item[0] - current[-1][0] > tolerance:
            prices = [p for p, _, _ in current]
            zones.append(
                ConfluenceZone(
                    low=min(prices),
                    high=max(prices),
                    score=round(sum(w for _, w, _ in current), 3),
                    contributors=sorted({c for _, _, c in current}),
                )
            )
            current = []
        current.append(item)
    zones = sorted(zones, key=lambda z: z.score, reverse=True)[:MAX_ZONES]
    report = ConfluenceReport(as_of=market.as_of, produced_by=NODE, tolerance=tolerance, zones=zones)
    return {"levels": LevelsSection(confluence=report), "audit": [event(NODE, "ANALYSIS_UPDATE", f"{len(zones)} zones", market.as_of)]}
