"""L8 execution: the approved order becomes a bracket (entry, stop loss, take profit) at the broker.

The governor is asked again right before placing: a halt set while the run
waited for approval stops it here. The bracket id comes from the approval
(thread + approval task), and the broker adopts a bracket it already holds
under that id, so a retried, resumed or restarted execution never trades twice.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from nodes.common import end_run, event, services
from nodes.risk import evaluate, rejection
from state import AnalysisState
from state.sections import DecisionSection, OrdersSection, failed_checks
from tools.brokers import BracketRequest
from tools.context import Services
from tools.execution_ids import client_order_id

NODE = "execute"


async def execute(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    request, approval, market = state["request"], state["approval"], state["market"]
    context = services(runtime, request)
    governor = await context.ledger.governor()
    if governor.halted:
        return end_run(NODE, "REJECT", f"governor halted by {governor.changed_by}: {governor.reason}", market.as_of, kind="ORDER_REQUEST")
    info = runtime.execution_info
    bracket_id = approval.order_key or client_order_id(info.thread_id if info else None, market.as_of.isoformat())
    async with context.book_lock:
        return await _place(state, context, bracket_id, info.thread_id if info else None)


async def _place(state: AnalysisState, context: Services, bracket_id: str, thread_id: str | None) -> dict[str, Any]:
    request, risk, approval, market = state["request"], state["risk"], state["approval"], state["market"]
    broker, settings = context.broker, context.settings
    quantity = approval.quantity
    try:
        placed_before = await broker.find(bracket_id, symbol=request.symbol)
    except Exception as error:  # not knowing whether the order exists is no ground to place it
        return end_run(NODE, "REJECT", f"{broker.name} broker could not be asked for bracket {bracket_id}: {error}", market.as_of, kind="ORDER_REQUEST")
    if placed_before is None:
        # Other runs may have booked since this one was sized (they ran side by side, or while it
        # waited for approval): the caps are checked again against the book as it is now.
        now = await evaluate(state, context, stop=approval.stop)
        failed = failed_checks(now.checks)
        if failed or not now.assessment.approved or now.assessment.quantity <= 0:
            reason = "the book changed since risk sized this order: " + (rejection(now.checks) or "no room left")
            return end_run(NODE, "REJECT", reason, market.as_of, kind="ORDER_REQUEST")
        quantity = min(quantity, now.assessment.quantity)
    signals = state.get("signals") or {}
    try:
        bracket = BracketRequest(
            bracket_id=bracket_id,
            thread_id=thread_id,
            symbol=request.symbol,
            side=risk.side,
            quantity=quantity,
            entry_type=settings.entry_order_type,
            reference_price=market.last_price,
            limit_price=risk.entry if settings.entry_order_type == "limit" else None,
            stop=approval.stop or risk.stop,
            target=risk.target,
            as_of=market.as_of,
            risk_amount=quantity * abs(market.last_price - (approval.stop or risk.stop)),
            strategies=[f"{n}@{signals[n].version}" for n in state["consensus"].agreeing if n in signals],
            tags=risk.tags,
            market_source=context.market_source,
        )
        position = await broker.place_bracket(bracket)
        if not position.market_source:  # a live bracket rebuilt from the exchange knows nothing of the run
            position = position.model_copy(update={"market_source": context.market_source})
        # The paper broker keeps its book in the ledger already; a live bracket is recorded here.
        position = await context.ledger.insert(position)
    except Exception as error:  # a broker failure is an outcome to record, not a crash
        return end_run(NODE, "REJECT", f"{broker.name} broker refused the order: {error}", market.as_of, kind="ORDER_REQUEST")
    action = "BUY" if risk.side == "buy" else "SELL"
    entry = next(o for o in position.orders if o.role == "entry")
    if entry.status == "filled":
        reason = f"{entry.side} {entry.quantity:.8g} {request.symbol} filled at {entry.fill_price:.8g} ({broker.name})"
        kind, verdict = "ORDER_FILLED", action
    else:
        reason = f"{entry.side} {entry.quantity:.8g} {request.symbol} limit at {entry.price:.8g} resting ({broker.name})"
        kind, verdict = "ORDER_REQUEST", f"{action}_RESTING"
    detail = {"bracket_id": bracket_id, "fill_price": entry.fill_price, "fee": entry.fee, "status": position.status}
    return {
        "orders": OrdersSection(as_of=market.as_of, produced_by=NODE, broker=broker.name, orders=position.orders, position=position),
        "decision": DecisionSection(as_of=market.as_of, produced_by=NODE, action=action, stage=NODE, reason=reason),
        "audit": [event(NODE, kind, verdict, market.as_of, detail)],
    }
