"""L8 execution: the approved order becomes a bracket (entry, stop loss, take profit) at the broker."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from nodes.common import end_run, event, services
from state import AnalysisState
from state.sections import DecisionSection, OrdersSection
from tools.brokers import BracketRequest
from tools.context import Services
from tools.execution_ids import client_order_id

NODE = "execute"


async def execute(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    request, risk, approval, market = state["request"], state["risk"], state["approval"], state["market"]
    broker = services(runtime, request).broker
    info = runtime.execution_info
    order_id = client_order_id(info.thread_id if info else None, info.task_id if info else market.as_of.isoformat())
    try:
        bracket = BracketRequest(
            client_order_id=order_id,
            symbol=request.symbol,
            side=risk.side,
            quantity=approval.quantity,
            reference_price=market.last_price,
            stop=risk.stop,
            target=risk.target,
        )
        orders = await broker.place_bracket(bracket)
    except Exception as error:  # a broker failure is an outcome to record, not a crash
        return end_run(NODE, "REJECT", f"{broker.name} broker refused the order: {error}", market.as_of, kind="ORDER_REQUEST")
    entry = orders[0]
    action = "BUY" if risk.side == "buy" else "SELL"
    reason = f"{entry.side} {entry.quantity:.8g} {request.symbol} filled at {entry.fill_price:.8g} ({broker.name})"
    return {
        "orders": OrdersSection(as_of=market.as_of, produced_by=NODE, broker=broker.name, orders=orders),
        "decision": DecisionSection(as_of=market.as_of, produced_by=NODE, action=action, stage=NODE, reason=reason),
        "audit": [event(NODE, "ORDER_FILLED", action, market.as_of, {"client_order_id": order_id, "fill_price": entry.fill_price, "fee": entry.fee})],
    }
