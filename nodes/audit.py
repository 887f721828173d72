"""L9 audit: closes the run's trail with the decision and a hash chain over every event."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from langgraph.runtime import Runtime

from nodes.common import event
from state import AnalysisState
from state.sections import AuditEvent, DecisionSection
from tools.context import Services

NODE = "audit"


def chain_hash(events: list[AuditEvent]) -> str:
    """Each link hashes the previous link and the event, so editing any event changes the head."""
    head = "0" * 64
    for item in events:
        head = hashlib.sha256((head + item.model_dump_json()).encode()).hexdigest()
    return head


async def audit(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    decision = state.get("decision")
    market = state.get("market")
    as_of = market.as_of if market else datetime.now(UTC)
    update: dict[str, Any] = {}
    if decision is None:  # fail closed: a run that got here without a verdict holds
        decision = DecisionSection(as_of=as_of, produced_by=NODE, action="HOLD", stage=NODE, reason="no decision was reached")
        update["decision"] = decision
    trail = state.get("audit") or []
    detail = {"action": decision.action, "stage": decision.stage, "reason": decision.reason, "events": len(trail), "chain": chain_hash(trail)}
    update["audit"] = [event(NODE, "DECISION", decision.action, as_of, detail)]
    return update
