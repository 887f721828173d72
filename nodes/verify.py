"""L6 verification: the consensus signal is well formed and no higher timeframe contradicts it."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from nodes.common import end_run, event, services
from prompts import load_prompt
from state import AnalysisState
from state.sections import (
    Check,
    ConsensusSection,
    FeaturesSection,
    RationaleAudit,
    Signal,
    VerificationSection,
    failed_checks,
    is_finite,
)
from tools.context import Services
from tools.llm import advise

NODE = "verify"
MIN_REWARD_RISK = 1.0
OPPOSITE = {"LONG": "TRENDING_DOWN", "SHORT": "TRENDING_UP"}
# A strategy firing far above its own habit, or changing sides back and forth, is not trusted today.
RATE_MULTIPLE = 3.0
RATE_SLACK = 0.04
MAX_FLIPS = 2
MIN_ANALOGS = 5
ANALOG_FLOOR = 0.5  # analogs winning less than half as often as the strategy's norm
VETO_CONFIDENCE = 0.8  # the LLM may object, never approve, and only when it is sure
NUMBER = re.compile(r"\d")


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
        checks.append(analog_check(name, signal))
    return checks


def analog_check(name: str, signal: Signal) -> Check:
    """Past setups like today's (same strategy, same direction, this chart) must not do far worse than its norm."""
    count, rate, norm = signal.analog_trades or 0, signal.analog_win_rate, signal.overall_win_rate
    if count < MIN_ANALOGS or rate is None or not norm:
        return Check(name=f"analogs:{name}", passed=None, detail=f"{count} past setups: too few to judge")
    detail = f"{rate:.0%} of {count} past {signal.direction} setups won vs {norm:.0%} for all its signals"
    return Check(name=f"analogs:{name}", passed=rate >= ANALOG_FLOOR * norm, detail=detail)


def signal_checks(consensus: ConsensusSection | Signal) -> list[Check]:
    """Structure of a consensus or of one signal: finite levels, confidence range, stop and target sides."""
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


def rule_rationale_check(consensus: ConsensusSection, signals: dict[str, Signal], why: str) -> Check:
    """Without the LLM: every agreeing strategy must state evidence with figures in it."""
    vague = [n for n in consensus.agreeing if n in signals and not (len(signals[n].rationale) >= 20 and NUMBER.search(signals[n].rationale))]
    detail = f"rules ({why}): " + (f"no figures in {', '.join(vague)}" if vague else "every rationale names its evidence")
    return Check(name="rationale_audit", passed=not vague, detail=detail)


async def rationale_check(state: AnalysisState, context: Services) -> tuple[Check, dict[str, Any]]:
    consensus, request = state["consensus"], state["request"]
    signals = state.get("signals") or {}
    if context.llm is None:
        return rule_rationale_check(consensus, signals, "LLM disabled"), {}
    prompt = load_prompt("rationale_audit")
    evidence = "\n".join(f"- {n}: {signals[n].rationale}" for n in consensus.agreeing if n in signals)
    target = consensus.targets[0] if consensus.targets else None
    user = prompt.render_user(
        symbol=request.symbol, direction=consensus.direction, timeframe=consensus.timeframe,
        entry=f"{consensus.entry}", stop=f"{consensus.stop}", target=f"{target}", evidence=evidence,
    )
    key = ("rationale", hashlib.sha256(user.encode()).hexdigest())
    audit, call, failure = await advise(
        context.llm, context.verdicts, key, [SystemMessage(prompt.system), HumanMessage(user)], RationaleAudit,
        timeout=context.settings.llm_timeout_seconds, prompt_version=prompt.version, ttl=context.settings.sanity_cache_seconds,
    )
    if audit is None:
        return rule_rationale_check(consensus, signals, f"LLM unavailable: {failure}"), call
    said = f"{'consistent' if audit.consistent else 'inconsistent'} ({audit.confidence:.2f}): {'; '.join(audit.concerns) or 'no concerns'}"
    if audit.consistent:
        return Check(name="rationale_audit", passed=True, detail=said), call
    if audit.confidence >= VETO_CONFIDENCE:
        return Check(name="rationale_audit", passed=False, detail=f"veto: {said}"), call
    return Check(name="rationale_audit", passed=None, detail=f"advisory, low confidence: {said}"), call


async def verify(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    consensus, market = state["consensus"], state["market"]
    rationale, llm_call = await rationale_check(state, services(runtime, state["request"]))
    signals = state.get("signals") or {}
    # Every agreeing signal is validated on its own, not only the consensus built from the lead one.
    each = [
        check.model_copy(update={"name": f"{check.name}:{name}"})
        for name in consensus.agreeing
        if name in signals
        for check in signal_checks(signals[name])
        if check.name != "reward_risk"  # a supporting signal's own target may be modest; the trade's is checked
    ]
    checks = (
        signal_checks(consensus)
        + each
        + timeframe_checks(consensus, state.get("features"), list(market.timeframes))
        + anomaly_checks(consensus, signals)
        + [rationale]
    )
    failed = failed_checks(checks)
    section = VerificationSection(as_of=market.as_of, produced_by=NODE, passed=not failed, checks=checks)
    if failed:
        reason = "verification failed: " + "; ".join(f"{c.name} ({c.detail})" for c in failed)
        return end_run(NODE, "HOLD", reason, market.as_of, kind="VERIFIED_SIG", detail={"llm_call": llm_call}, verification=section)
    detail = {"checks": len(checks), "llm_call": llm_call}
    return {"verification": section, "audit": [event(NODE, "VERIFIED_SIG", "PASS", market.as_of, detail)]}
