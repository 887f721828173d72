"""What every node shares: reaching the services, stamping events, ending a run early."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from langgraph.runtime import Runtime

from state import Settings
from state.sections import AuditEvent, DecisionSection, EventType, RunRequest
from tools.context import Services, build_services

# `langgraph dev` runs the graph without our context; it gets default services
# per request, kept here so its parallel nodes share one indicator cache.
_studio_services: dict[str, Services] = {}


def services(runtime: Runtime[Services], request: RunRequest) -> Services:
    # The langgraph server passes a context of its own (a dict, `{}` at least), never our Services.
    if isinstance(runtime.context, Services):
        return runtime.context
    key = request.model_dump_json()
    if key not in _studio_services:
        if len(_studio_services) > 32:
            _studio_services.clear()
        _studio_services[key] = build_services(Settings(), request)
    return _studio_services[key]


def event(
    node: str, kind: EventType, verdict: str, as_of: datetime, detail: dict[str, Any] | None = None
) -> AuditEvent:
    return AuditEvent(
        as_of=as_of,
        produced_by=node,
        event=kind,
        verdict=verdict,
        detail=detail or {},
        recorded_at=datetime.now(UTC),
    )


def end_run(
    node: str,
    action: str,
    reason: str,
    as_of: datetime,
    kind: EventType = "ANALYSIS_UPDATE",
    detail: dict[str, Any] | None = None,
    **sections: Any,
) -> dict[str, Any]:
    """A partial update that ends the run here with a reasoned HOLD or REJECT."""
    decision = DecisionSection(as_of=as_of, produced_by=node, action=action, stage=node, reason=reason)
    return {
        **sections,
        "decision": decision,
        "audit": [event(node, kind, action, as_of, {"reason": reason, **(detail or {})})],
    }
