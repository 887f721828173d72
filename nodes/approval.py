"""Human approval: `interrupt()` with the proposed order when the policy asks for a human.

Everything before `interrupt()` is pure, because a resume runs this node again from its start.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from nodes.common import end_run, event, services
from state import AnalysisState
from state.sections import ApprovalRequest, ApprovalResponse, ApprovalSection, RiskSection
from state.settings import Settings
from tools.context import Services

NODE = "approval"


def reasons_for_human(mode: str, risk: RiskSection, regime: str | None, settings: Settings) -> list[str]:
    if mode == "always":
        return ["approval mode is 'always'"]
    if mode == "observe":
        return []
    reasons = []
    if (risk.notional or 0) > settings.approval_threshold_notional:
        reasons.append(f"notional {risk.notional:.2f} above {settings.approval_threshold_notional:.2f}")
    if regime == "VOLATILE":
        reasons.append("volatile regime")
    return reasons


async def approval(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    request, risk, market = state["request"], state["risk"], state["market"]
    settings = services(runtime, request).settings
    features = state.get("features")
    regime = features.regime.primary if features and features.regime else None
    reasons = reasons_for_human(request.approval_mode, risk, regime, settings)
    section = dict(as_of=market.as_of, produced_by=NODE, mode=request.approval_mode, required=bool(reasons))
    if not reasons:
        approved = ApprovalSection(
            **section, status="auto_approved", by="policy", at=datetime.now(UTC), reason=f"mode {request.approval_mode}", quantity=risk.quantity
        )
        return {"approval": approved, "audit": [event(NODE, "APPROVED_ORD", "AUTO", market.as_of)]}
    proposal = ApprovalRequest(
        thread_id=runtime.execution_info.thread_id if runtime.execution_info else None,
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
    )
    # A resume value that does not fit the schema raises before anything is saved: the run stays paused.
    response: ApprovalResponse = interrupt(proposal.model_dump(mode="json"), response_schema=ApprovalResponse)
    at = datetime.now(UTC)
    if response.action == "reject":
        rejected = ApprovalSection(**section, status="rejected", by=response.by, at=at, reason=response.reason or "rejected by operator", quantity=risk.quantity)
        return end_run(NODE, "REJECT", f"rejected by {response.by}: {rejected.reason}", market.as_of, kind="APPROVED_ORD", approval=rejected)
    quantity, status = risk.quantity, "approved"
    if response.action == "modify":
        if response.quantity >= risk.quantity:
            return end_run(NODE, "REJECT", f"modify may only shrink the size ({response.quantity} >= {risk.quantity})", market.as_of, kind="APPROVED_ORD")
        quantity, status = response.quantity, "modified"
    approved = ApprovalSection(**section, status=status, by=response.by, at=at, reason=response.reason, quantity=quantity)
    return {"approval": approved, "audit": [event(NODE, "APPROVED_ORD", status.upper(), market.as_of, {"by": response.by, "quantity": quantity})]}
