"""L7 position risk: size so the loss at the stop is the configured fraction of equity; any doubt rejects."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from nodes.common import end_run, event, services
from state import AnalysisState
from state.sections import Check, RiskSection, failed_checks, is_finite
from state.settings import MAX_RISK_PER_TRADE
from tools.context import Services

NODE = "risk"
# A stop closer than this to the entry is inside the noise and would size absurdly large.
MIN_STOP_DISTANCE = 0.001
MAX_LEVERAGE = 1.0


async def risk(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    consensus, market, request = state["consensus"], state["market"], state["request"]
    settings = services(runtime, request).settings
    equity = settings.account_equity
    # The consensus may propose less (quarter-Kelly on the track record); never more than the setting.
    proposed = consensus.kelly_fraction if consensus.kelly_fraction is not None else settings.risk_per_trade
    fraction = min(settings.risk_per_trade, proposed, MAX_RISK_PER_TRADE)
    entry, stop = consensus.entry, consensus.stop
    target = consensus.targets[0] if consensus.targets else None
    side = "buy" if consensus.direction == "LONG" else "sell"
    checks = [
        Check(name="positive_edge", passed=fraction > 0, detail=f"risk fraction {fraction:.4f} (Kelly proposal {consensus.kelly_fraction})"),
        Check(name="inputs_present", passed=is_finite(entry, stop, target), detail=f"entry {entry}, stop {stop}, target {target}"),
        Check(name="direction_allowed", passed=side == "buy" or settings.allow_short, detail=f"{side} on spot; allow_short={settings.allow_short}"),
    ]
    quantity = notional = risk_amount = None
    if checks[1].passed and fraction > 0:
        distance = abs(entry - stop)
        checks.append(Check(name="stop_distance", passed=distance / entry >= MIN_STOP_DISTANCE, detail=f"{distance / entry:.4%} of entry"))
        if distance > 0:
            quantity = equity * fraction / distance
            # Without leverage the position cannot cost more than the account holds.
            max_quantity = equity * MAX_LEVERAGE / entry
            capped = quantity > max_quantity
            quantity = min(quantity, max_quantity)
            notional, risk_amount = quantity * entry, quantity * distance
            checks.append(Check(name="leverage_cap", passed=True, detail="size capped to equity" if capped else "within equity"))
            checks.append(Check(name="risk_cap", passed=risk_amount <= equity * MAX_RISK_PER_TRADE + 1e-9, detail=f"{risk_amount:.2f} at risk"))
            checks.append(Check(name="min_notional", passed=notional >= settings.min_notional, detail=f"{notional:.2f} vs {settings.min_notional}"))
    failed = failed_checks(checks)
    section = RiskSection(
        as_of=market.as_of,
        produced_by=NODE,
        approved=not failed,
        checks=checks,
        side=side,
        entry=entry,
        stop=stop,
        target=target,
        quantity=quantity,
        notional=notional,
        risk_amount=risk_amount,
        risk_fraction=fraction,
        equity=equity,
    )
    if failed:
        reason = "risk rejected: " + "; ".join(f"{c.name} ({c.detail})" for c in failed)
        return end_run(NODE, "REJECT", reason, market.as_of, kind="ORDER_REQUEST", risk=section)
    detail = {"side": side, "quantity": quantity, "notional": notional, "risk_amount": risk_amount}
    return {"risk": section, "audit": [event(NODE, "ORDER_REQUEST", "SIZED", market.as_of, detail)]}
