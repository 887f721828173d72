"""L6 verification: the consensus signal is well formed and no higher timeframe contradicts it."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from nodes.common import end_run, event
from state import AnalysisState
from state.sections import Check, ConsensusSection, FeaturesSection, Signal, VerificationSection, failed_checks, is_finite
from tools.context import Services

NODE = "verify"
MIN_REWARD_RISK = 1.0
OPPOSITE = {"LONG": "TRENDING_DOWN", "SHORT": "TRENDING_UP"}
# A strategy firing far above its own habit, or changing sides back and forth, is not trusted today.
RATE_MULTIPLE = 3.0
RATE_SLACK = 0.04
MAX_FLIPS = 2


def anomaly_checks(consensus: ConsensusSection, signals: dict[str, Signal]) -> list[Check]:
    checks = []
    for name in consensus.agreeing:
        signal = signals.get(name)
        if signal is None or signal.recent_rate is None or signal.historical_rate is None:
            continue  # operator signals have no habit to compare with
        limit = RATE_MULTIPLE * signal.historical_rate + RATE_SLACK
        checks.append(
            Check(
                name=f"signal_rate:{name}",
                passed=signal.recent_rate <= limit,
                detail=f"new signals on {signal.recent_rate:.0%} of recent candles vs {signal.historical_rate:.0%} historically (limit {limit:.0%})",
            )
        )
        checks.append(
            Check(name=f"flip_flop:{name}", passed=(signal.recent_flips or 0) <= MAX_FLIPS, detail=f"{signal.recent_flips} side changes lately")
        )
    return checks


def signal_checks(consensus: ConsensusSection) -> list[Check]:
    entry, stop = consensus.entry, consensus.stop
    target = consensus.targets[0] if consensus.targets else None
    if not is_finite(entry, stop, target):
        return [Check(name="finite_levels", passed=False, detail=f"entry {entry}, stop {stop}, target {target}")]
    sign = 1 if consensus.direction == "LONG" else -1
    risk, reward = sign * (entry - stop), sign * (target - entry)
    return [
        Check(name="finite_levels", passed=True),
        Check(name="confidence_range", passed=0.0 <= consensus.confidence <= 1.0, detail=f"{consensus.confidence:.2f}"),
        Check(name="stop_side", passed=risk > 0, detail=f"stop {stop:.6g} vs entry {entry:.6g}"),
        Check(name="target_side", passed=reward > 0, detail=f"target {target:.6g} vs entry {entry:.6g}"),
        Check(
            name="reward_risk",
            passed=risk > 0 and reward / risk >= MIN_REWARD_RISK,
            detail=f"{reward / risk:.2f} (min {MIN_REWARD_RISK})" if risk > 0 else "no risk distance",
        ),
    ]


def timeframe_checks(consensus: ConsensusSection, features: FeaturesSection | None, timeframes: list[str]) -> list[Check]:
    if not features or not features.regime:
        return [Check(name="higher_timeframes", passed=False, detail="no regime analysis")]
    higher = timeframes[timeframes.index(consensus.timeframe) + 1 :]
    against = [tf for tf in higher if features.regime.by_timeframe[tf].regime == OPPOSITE[consensus.direction]]
    detail = f"{', '.join(against)} trend against {consensus.direction}" if against else f"{len(higher)} higher timeframes agree or are neutral"
    return [Check(name="higher_timeframes", passed=not against, detail=detail)]


async def verify(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    consensus, market = state["consensus"], state["market"]
    checks = (
        signal_checks(consensus)
        + timeframe_checks(consensus, state.get("features"), list(market.timeframes))
        + anomaly_checks(consensus, state.get("signals") or {})
    )
    failed = failed_checks(checks)
    section = VerificationSection(as_of=market.as_of, produced_by=NODE, passed=not failed, checks=checks)
    if failed:
        reason = "verification failed: " + "; ".join(f"{c.name} ({c.detail})" for c in failed)
        return end_run(NODE, "HOLD", reason, market.as_of, kind="VERIFIED_SIG", verification=section)
    return {"verification": section, "audit": [event(NODE, "VERIFIED_SIG", "PASS", market.as_of, {"checks": len(checks)})]}
