"""L3 confluence map: levels from every analyst merged into scored zones (ATR tolerance)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from nodes.common import event, services
from state import AnalysisState
from state.sections import ConfluenceReport, ConfluenceZone, FeaturesSection, LevelsSection
from tools.context import Services
from tools.indicators import column_arrays

NODE = "confluence"
TOLERANCE_ATR = 0.25
MAX_ZONES = 10


def collect(state: AnalysisState, decision_timeframe: str) -> list[tuple[float, float, str]]:
    """(price, weight, contributor) for every level the analysts produced."""
    levels, features = state.get("levels") or LevelsSection(), state.get("features") or FeaturesSection()
    found: list[tuple[float, float, str]] = []
    if levels.support_resistance:
        found += [(l.price, l.strength, f"body_{l.kind}@{l.timeframe}") for l in levels.support_resistance.levels]
    if levels.fibonacci:
        for tf, fib in levels.fibonacci.by_timeframe.items():
            found += [(p, 1.0, f"fib_{ratio}@{tf}") for ratio, p in fib.retracements.items()]
            found += [(sum(fib.golden_pocket) / 2, 1.5, f"golden_pocket@{tf}")]
    if levels.anchored_vwap:
        for tf, group in levels.anchored_vwap.by_timeframe.items():
            found += [(v.value, 1.0, f"avwap_{v.anchor_kind}@{tf}") for v in group.vwaps]
    if features.structure:
        for tf, s in features.structure.by_timeframe.items():
            found += [(p, 1.0, f"swing_{k}@{tf}") for k, p in (("high", s.last_swing_high), ("low", s.last_swing_low)) if p]
    if features.key_levels:
        found += [(k.price, 1.0, k.name) for k in features.key_levels.levels]
    if features.volume and decision_timeframe in features.volume.by_timeframe:
        profile = features.volume.by_timeframe[decision_timeframe].profile
        found += [
            (profile.point_of_control, 1.5, f"poc@{decision_timeframe}"),
            (profile.value_area_high, 1.0, f"vah@{decision_timeframe}"),
            (profile.value_area_low, 1.0, f"val@{decision_timeframe}"),
        ]
    return found


def merge_zones(found: list[tuple[float, float, str]], tolerance: float) -> list[ConfluenceZone]:
    """Levels closer than `tolerance` to their neighbour chain into one zone, strongest zones first."""
    # (score, members) per zone; only the MAX_ZONES kept become models: validating every zone cost more than merging.
    chains: list[tuple[float, list[tuple[float, float, str]]]] = []
    current: list[tuple[float, float, str]] = []
    for item in sorted(found) + [(float("inf"), 0.0, "")]:
        if current and item[0] - current[-1][0] > tolerance:
            chains.append((round(sum(w for _, w, _ in current), 3), current))
            current = []
        current.append(item)
    strongest = sorted(chains, key=lambda chain: chain[0], reverse=True)[:MAX_ZONES]  # stable, as over the zones
    return [
        ConfluenceZone(
            low=min(p for p, _, _ in members),
            high=max(p for p, _, _ in members),
            score=score,
            contributors=sorted({c for _, _, c in members}),
        )
        for score, members in strongest
    ]


async def confluence(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    request, market = state["request"], state["market"]
    loaded = await services(runtime, request).frames.get(request.symbol, request.decision_timeframe, market.as_of)
    tolerance = TOLERANCE_ATR * float(column_arrays(loaded.frame, "atr")[0][-1])
    zones = merge_zones(collect(state, request.decision_timeframe), tolerance)
    report = ConfluenceReport(as_of=market.as_of, produced_by=NODE, tolerance=tolerance, zones=zones)
    return {"levels": LevelsSection(confluence=report), "audit": [event(NODE, "ANALYSIS_UPDATE", f"{len(zones)} zones", market.as_of)]}
