"""Human approval: `interrupt()` with the proposed order and its evidence when the policy asks for a human.

Everything before `interrupt()` is pure, because a resume runs this node
again from its start. After the operator answers, the answer is checked
against the clock and the market: a proposal older than the approval TTL, or
one whose price has moved beyond the allowed drift, expires instead of
executing, whatever the operator said.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from nodes.common import end_run, event, services
from nodes.risk import evaluate, rejection
from state import AnalysisState
from state.sections import ApprovalRequest, ApprovalResponse, ApprovalSection, RiskSection
from state.settings import Settings
from tools.context import Services
from tools.execution_ids import client_order_id

NODE = "approval"


def reasons_for_human(mode: str, risk: RiskSection, regime: str | None, settings: Settings) -> list[str]:
    if mode == "always":
        return ["approval mode is 'always'"]
    if mode == "observe":
        return []
    reasons = []
    if (risk.notional or 0) > settings.approval_threshold_notional:
        reasons.append(f"notional {risk.notional:.2f} above {settings.approval_threshold_notional:.2f}")
    if risk.first_trade_strategies:
        reasons.append(f"first trade of {', '.join(risk.first_trade_strategies)}")
    if regime == "VOLATILE":
        reasons.append("volatile regime")
    return reasons


async def price_drift(context: Services, state: AnalysisState, decided_at: datetime, now: datetime) -> tuple[float | None, str]:
    """How far the price moved since the decision, on the market's clock (the run's clock plus the wait)."""
    request, market = state["request"], state["market"]
    market_now = market.as_of + max(now - decided_at, timedelta(0))
    try:
        candles = await context.source.fetch_candles(request.symbol, request.timeframes[0], until=market_now, limit=2)
        price = float(candles["close"].iloc[-1])
    except Exception as error:  # an unknown price cannot be shown not to have drifted
        return None, f"the current price could not be read: {error}"
    if not price > 0:
        return None, f"the current price is unusable ({price})"
    drift = abs(price - market.last_price) / market.last_price
    return drift, f"price {price:.8g} vs {market.last_price:.8g} at the decision ({drift:.2%})"


async def approval(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    request, risk, market = state["request"], state["risk"], state["market"]
    context = services(runtime, request)
    settings = context.settings
    features = state.get("features")
    regime = features.regime.primary if features and features.regime else None
    reasons = reasons_for_human(request.approval_mode, risk, regime, settings)
    info = runtime.execution_info
    # This task's id survives interrupt, resume and restart: every order of the bracket derives from it.
    order_key = client_order_id(info.thread_id if info else None, info.task_id if info else market.as_of.isoformat())
    section = dict(as_of=market.as_of, produced_by=NODE, mode=request.approval_mode, required=bool(reasons), order_key=order_key)
    if not reasons:
        approved = ApprovalSection(
            **section, status="auto_approved", by="policy", at=datetime.now(UTC), reason=f"mode {request.approval_mode}", quantity=risk.quantity
        )
        return {"approval": approved, "audit": [event(NODE, "APPROVED_ORD", "AUTO", market.as_of, {"order_key": order_key})]}
    decided_at = risk.decided_at or datetime.now(UTC)
    expires_at = decided_at + timedelta(seconds=settings.approval_ttl_seconds)
    verification = state.get("verification")
    proposal = ApprovalRequest(
        thread_id=info.thread_id if info else None,
        symbol=request.symbol,
        side=risk.side,
        quantity=risk.quantity,
        entry=risk.entry,
        stop=risk.stop,
        target=risk.target,
        notional=risk.notional,
        risk_amount=risk.risk_amount,
        reasons=reasons,
        strategies=state["consensus"].agreeing,
        regime=regime,
        reference_price=market.last_price,
        expires_at=expires_at,
        risk_fraction=risk.risk_fraction,
        heat_after=risk.heat_after,
        consensus=state["consensus"].reason,
        checks=[*(verification.checks if verification else []), *risk.checks],
    )
    # A resume value that does not fit the schema raises before anything is saved: the run stays paused.
    response: ApprovalResponse = interrupt(proposal.model_dump(mode="json"), response_schema=ApprovalResponse)
    at = datetime.now(UTC)
    stale = ""
    if at > expires_at:  # whatever the answer: a late approval must not trade, a late reject is an expiry
        stale = f"approval expired: answered {at - decided_at} after the decision, the limit is {settings.approval_ttl_seconds:g}s"
    elif response.action == "reject":
        rejected = ApprovalSection(**section, status="rejected", by=response.by, at=at, reason=response.reason or "rejected by operator", quantity=risk.quantity)
        return end_run(NODE, "REJECT", f"rejected by {response.by}: {rejected.reason}", market.as_of, kind="APPROVED_ORD", approval=rejected)
    else:
        drift, detail = await price_drift(context, state, decided_at, at)
        if drift is None or drift > settings.approval_max_drift:
            stale = f"approval expired: {detail}; the limit is {settings.approval_max_drift:.2%}"
    if stale:
        expired = ApprovalSection(**section, status="expired", by=response.by, at=at, reason=stale, quantity=risk.quantity)
        return end_run(NODE, "REJECT", stale, market.as_of, kind="APPROVED_ORD", detail={"answered_by": response.by}, approval=expired)
    quantity, stop, status = risk.quantity, None, "approved"
    if response.action == "modify":
        quantity, stop, refusal = await modified_order(state, context, response)
        if refusal:
            refused = ApprovalSection(**section, status="rejected", by=response.by, at=at, reason=refusal, quantity=risk.quantity)
            return end_run(NODE, "REJECT", refusal, market.as_of, kind="APPROVED_ORD", approval=refused)
        status = "modified"
    approved = ApprovalSection(**section, status=status, by=response.by, at=at, reason=response.reason, quantity=quantity, stop=stop)
    detail = {"by": response.by, "quantity": quantity, "stop": stop, "order_key": order_key}
    return {"approval": approved, "audit": [event(NODE, "APPROVED_ORD", status.upper(), market.as_of, detail)]}


async def modified_order(state: AnalysisState, context: Services, response: ApprovalResponse) -> tuple[float, float | None, str]:
    """A smaller size, a wider stop, or both; a wider stop goes through the risk rules again.

    Returns (quantity, stop, refusal); a non-empty refusal rejects the order.
    """
    risk = state["risk"]
    quantity = response.quantity if response.quantity is not None else risk.quantity
    if quantity > risk.quantity:
        return risk.quantity, None, f"modify may only shrink the size ({quantity} > {risk.quantity})"
    if response.stop is None:
        return quantity, None, ""
    wider = response.stop < risk.stop if risk.side == "buy" else response.stop > risk.stop
    if not wider:
        return risk.quantity, None, f"modify may only widen the stop ({response.stop} vs {risk.stop})"
    recheck = await evaluate(state, context, stop=response.stop)
    failed = rejection(recheck.checks)
    if not recheck.assessment.approved or failed:
        return risk.quantity, None, f"the modified order fails risk: {failed}"
    # Risk sizes the wider stop smaller; the operator's size stands only if it is smaller still.
    return min(quantity, recheck.assessment.quantity or 0.0), response.stop, ""
