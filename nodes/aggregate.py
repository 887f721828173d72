"""L5 aggregator: a regime-, performance- and confidence-weighted net signal, or HOLD.

Weights are written into the consensus section (with the regime and
track-record factors behind them) so a replay can show why it decided.
"""

from __future__ import annotations

import asyncio

from typing import Any

from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore

from nodes.common import end_run, event, services
from state import AnalysisState
from state.sections import ConsensusSection, Direction, Signal, StrategyTrackRecord
from state.settings import MAX_RISK_PER_TRADE
from tools.context import Services
from tools.ttl_cache import TtlCache

NODE = "aggregate"
MIN_NET_SCORE = 0.25
MIN_AGREEING = 2  # one strategy alone is an opinion, not a consensus
# Two opposed signals this confident mean the market is ambiguous, whatever the weights say.
CONFLICT_CONFIDENCE = 0.5
REGIME_WEIGHTS: dict[str, dict[str, float]] = {
    "momentum": {"TRENDING_UP": 1.5, "TRENDING_DOWN": 1.5, "RANGING": 0.5, "VOLATILE": 0.75},
    "oscillator": {"TRENDING_UP": 0.5, "TRENDING_DOWN": 0.5, "RANGING": 1.5, "VOLATILE": 0.75},
}
SIGN = {"LONG": 1, "SHORT": -1, "FLAT": 0}
TRACK_RECORD_NAMESPACE = ("strategy_stats",)
MIN_TRADES_FOR_RECORD = 20  # fewer trades say nothing about a strategy
KELLY_SHARE = 0.25  # full Kelly on estimated odds is far too aggressive
TRACK_RECORD_TTL = 60.0  # seconds a process reuses a track record it read: a recorded backtest counts within a minute


def performance_factor(record: StrategyTrackRecord | None) -> float:
    """1.0 without a usable record; otherwise grows with the trailing Sharpe, within [0.25, 2]."""
    if record is None or record.trades < MIN_TRADES_FOR_RECORD:
        return 1.0
    return min(2.0, max(0.25, 1.0 + record.sharpe / 2.0))


def kelly_fraction(records: list[StrategyTrackRecord], reward_risk: float | None) -> float | None:
    """Quarter-Kelly from the agreeing strategies' pooled win rate and payoff, capped at the risk cap.

    Without track records the payoff is the signal's reward/risk and the win
    rate a coin flip: no invented edge.
    """
    usable = [r for r in records if r.trades >= MIN_TRADES_FOR_RECORD]
    trades = sum(r.trades for r in usable)
    win_rate = sum(r.win_rate * r.trades for r in usable) / trades if trades else 0.5
    payoff = sum(r.payoff * r.trades for r in usable) / trades if trades else reward_risk
    if not payoff or payoff <= 0:
        return None
    full = win_rate - (1 - win_rate) / payoff
    return round(min(MAX_RISK_PER_TRADE, max(0.0, KELLY_SHARE * full)), 6)


async def track_records(
    store: BaseStore | None, signals: dict[str, Signal], cache: TtlCache | None = None
) -> dict[str, StrategyTrackRecord]:
    """The signals' strategies' records; with a cache, as read at most TRACK_RECORD_TTL seconds ago."""
    if store is None:
        return {}
    keys = {name: f"{s.strategy}@{s.version}" for name, s in signals.items()}
    # (record or None,): a strategy without a record is remembered as such too.
    known = {name: cache.get((id(store), key)) if cache is not None else None for name, key in keys.items()}
    missing = [name for name, entry in known.items() if entry is None]
    # Asked together: the store batches concurrent reads into one query instead of one per strategy.
    items = await asyncio.gather(*(store.aget(TRACK_RECORD_NAMESPACE, keys[name]) for name in missing))
    for name, item in zip(missing, items, strict=True):
        known[name] = (StrategyTrackRecord.model_validate(item.value) if item is not None else None,)
        if cache is not None:
            cache.put((id(store), keys[name]), known[name], TRACK_RECORD_TTL)
    return {name: entry[0] for name, entry in known.items() if entry is not None and entry[0] is not None}


def weigh(signals: dict[str, Signal], regime: str, performance: dict[str, float]) -> tuple[dict[str, float], dict[str, float], float]:
    weights = {
        name: REGIME_WEIGHTS.get(s.kind, {}).get(regime, 1.0) * performance.get(name, 1.0) for name, s in signals.items()
    }
    contributions = {name: weights[name] * SIGN[s.direction] * s.confidence for name, s in signals.items()}
    total = sum(weights.values())
    return weights, contributions, (sum(contributions.values()) / total if total else 0.0)


def verdict(healthy: dict[str, Signal], net: float) -> tuple[Direction, str]:
    longs = [s for s in healthy.values() if s.direction == "LONG"]
    shorts = [s for s in healthy.values() if s.direction == "SHORT"]
    if not healthy:
        return "FLAT", "no strategy produced a usable signal"
    strongest_long = max((s.confidence for s in longs), default=0)
    strongest_short = max((s.confidence for s in shorts), default=0)
    if min(strongest_long, strongest_short) >= CONFLICT_CONFIDENCE:
        return "FLAT", "strong signals disagree"
    if abs(net) < MIN_NET_SCORE:
        return "FLAT", f"no edge: net score {net:+.2f} within ±{MIN_NET_SCORE}"
    direction: Direction = "LONG" if net > 0 else "SHORT"
    agreeing = len(longs if direction == "LONG" else shorts)
    if agreeing < MIN_AGREEING:
        return "FLAT", f"only {agreeing} strategy for {direction}; {MIN_AGREEING} independent ones must agree"
    return direction, f"net score {net:+.2f}, {agreeing} strategies agree"


async def aggregate(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    market, request = state["market"], state["request"]
    features = state.get("features")
    regime = features.regime.primary if features and features.regime else "RANGING"
    # Errored signals, shadow versions and strategies the governor disabled are on record but carry no weight.
    disabled = (await services(runtime, request).ledger.governor()).disabled_strategies
    healthy = {
        name: s for name, s in (state.get("signals") or {}).items() if s.error is None and not s.shadow and name not in disabled
    }
    records = await track_records(runtime.store, healthy, services(runtime, request).track_records)
    performance = {name: performance_factor(records.get(name)) for name in healthy}
    weights, contributions, net = weigh(healthy, regime, performance)
    direction, reason = verdict(healthy, net)
    reason = f"{reason} in a {regime} regime"
    if muted := sorted(set(disabled) & set(state.get("signals") or {})):
        reason += f"; disabled by the governor: {', '.join(muted)}"
    agreeing = sorted(n for n, s in healthy.items() if s.direction == direction and direction != "FLAT")
    lead = healthy[max(agreeing, key=lambda n: abs(contributions[n]))] if agreeing else None
    reward_risk = None
    if lead and lead.entry and lead.stop and lead.targets and lead.entry != lead.stop:
        reward_risk = abs(lead.targets[0] - lead.entry) / abs(lead.entry - lead.stop)
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
        regime_factors={n: REGIME_WEIGHTS.get(s.kind, {}).get(regime, 1.0) for n, s in healthy.items()},
        performance_factors=performance,
        kelly_fraction=kelly_fraction([records[n] for n in agreeing if n in records], reward_risk) if lead else None,
    )
    if direction == "FLAT":
        return end_run(NODE, "HOLD", reason, market.as_of, kind="SIGNAL", consensus=section)
    detail = {"net_score": net, "agreeing": agreeing, "weights": weights, "kelly_fraction": section.kelly_fraction}
    return {"consensus": section, "audit": [event(NODE, "SIGNAL", direction, market.as_of, detail)]}
