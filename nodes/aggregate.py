"""L5 aggregator: a regime-weighted, confidence-weighted net signal, or HOLD."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from nodes.common import end_run, event
from state import AnalysisState
from state.sections import ConsensusSection, Direction, Signal
from tools.context import Services

NODE = "aggregate"
MIN_NET_SCORE = 0.25
# Two opposed signals this confident mean the market is ambiguous, whatever the weights say.
CONFLICT_CONFIDENCE = 0.5
REGIME_WEIGHTS: dict[str, dict[str, float]] = {
    "momentum": {"TRENDING_UP": 1.5, "TRENDING_DOWN": 1.5, "RANGING": 0.5, "VOLATILE": 0.75},
    "oscillator": {"TRENDING_UP": 0.5, "TRENDING_DOWN": 0.5, "RANGING": 1.5, "VOLATILE": 0.75},
}
SIGN = {"LONG": 1, "SHORT": -1, "FLAT": 0}


def weigh(signals: dict[str, Signal], regime: str) -> tuple[dict[str, float], dict[str, float], float]:
    weights = {name: REGIME_WEIGHTS.get(s.kind, {}).get(regime, 1.0) for name, s in signals.items()}
    contributions = {name: weights[name] * SIGN[s.direction] * s.confidence for name, s in signals.items()}
    total = sum(weights.values())
    return weights, contributions, (sum(contributions.values()) / total if total else 0.0)


async def aggregate(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    market, request = state["market"], state["request"]
    features = state.get("features")
    regime = features.regime.primary if features and features.regime else "RANGING"
    # Errored signals and shadow versions are on record but carry no weight.
    healthy = {name: s for name, s in (state.get("signals") or {}).items() if s.error is None and not s.shadow}
    weights, contributions, net = weigh(healthy, regime)
    longs = [s for s in healthy.values() if s.direction == "LONG"]
    shorts = [s for s in healthy.values() if s.direction == "SHORT"]
    direction: Direction = "FLAT"
    if not healthy:
        reason = "no strategy produced a usable signal"
    elif max((s.confidence for s in longs), default=0) >= CONFLICT_CONFIDENCE and max(
        (s.confidence for s in shorts), default=0
    ) >= CONFLICT_CONFIDENCE:
        reason = "strong signals disagree"
    elif abs(net) < MIN_NET_SCORE:
        reason = f"no edge: net score {net:+.2f} within ±{MIN_NET_SCORE}"
    else:
        direction = "LONG" if net > 0 else "SHORT"
        reason = f"net score {net:+.2f} in a {regime} regime"
    agreeing = sorted(n for n, s in healthy.items() if s.direction == direction and direction != "FLAT")
    lead = max((healthy[n] for n in agreeing), key=lambda s: abs(contributions[s.strategy]), default=None)
    section = ConsensusSection(
        as_of=market.as_of,
        produced_by=NODE,
        direction=direction,
        net_score=net,
        confidence=min(abs(net), 1.0),
        weights=weights,
        contributions=contributions,
        agreeing=agreeing,
        entry=lead.entry if lead else None,
        stop=lead.stop if lead else None,
        targets=lead.targets if lead else [],
        timeframe=request.decision_timeframe,
        reason=reason,
    )
    if direction == "FLAT":
        return end_run(NODE, "HOLD", reason, market.as_of, kind="SIGNAL", consensus=section)
    detail = {"net_score": net, "agreeing": agreeing, "weights": weights}
    return {"consensus": section, "audit": [event(NODE, "SIGNAL", direction, market.as_of, detail)]}
