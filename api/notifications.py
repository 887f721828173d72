"""Which audit records an operator should hear about, and what the message says.

Only four things warrant a ping: a trade waiting for approval, a drawdown
breaker trip, a governor halt and a filled entry. Everything else stays in the
audit trail. The classification reads the records the runner is about to
append (one graph step's worth), so the order fill can borrow the symbol,
size and bracket from the execute node's state-change record of the same step.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from state.portfolio import Position
from state.sections import ApprovalRequest
from tools.audit_log import AuditRecord
from tools.notify import Notification


def _num(value: Any) -> str:
    return f"{value:.8g}" if isinstance(value, int | float) else "?"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "no expiry"


def _approval(record: AuditRecord) -> Notification:
    raw = record.payload.get("proposal") or {}
    interrupt_id = record.payload.get("interrupt_id")
    try:
        proposal = ApprovalRequest.model_validate(raw)
    except ValidationError:
        # A malformed proposal still deserves a ping: the operator has to look at it either way.
        symbol = raw.get("symbol") if isinstance(raw, dict) else None
        return Notification(
            kind="approval_pending", title=f"Approval needed: {symbol or record.thread_id}",
            text="A trade is waiting for approval (its proposal could not be read).",
            thread_id=record.thread_id, symbol=symbol, at=record.recorded_at, detail={"interrupt_id": interrupt_id},
        )
    side = proposal.side.upper()
    lines = [
        f"{side} {_num(proposal.quantity)} {proposal.symbol}, entry {_num(proposal.entry)}, "
        f"stop {_num(proposal.stop)}, target {_num(proposal.target)}",
        f"notional {proposal.notional:.2f}, risk {proposal.risk_amount:.2f}; expires {_when(proposal.expires_at)}",
    ]
    if proposal.reasons:
        lines.append("why a human: " + "; ".join(proposal.reasons))
    if proposal.strategies:
        lines.append("strategies: " + ", ".join(proposal.strategies))
    detail = {
        "interrupt_id": interrupt_id,
        **proposal.model_dump(mode="json", include={"side", "quantity", "entry", "stop", "target", "notional", "expires_at"}),
    }
    return Notification(
        kind="approval_pending", title=f"Approval needed: {side} {proposal.symbol}", text="\n".join(lines),
        thread_id=record.thread_id, symbol=proposal.symbol, at=record.recorded_at, detail=detail,
    )


def _breaker(record: AuditRecord) -> Notification:
    reason = str(record.payload.get("reason") or "a drawdown limit was breached")
    drawdowns = record.payload.get("drawdowns") or {}
    measured = ", ".join(f"{period} {value:.2%}" for period, value in drawdowns.items() if isinstance(value, int | float))
    text = reason + (f" (drawdowns: {measured})" if measured else "") + "; new orders are halted."
    return Notification(
        kind="breaker_tripped", title="Circuit breaker tripped", text=text,
        thread_id=record.thread_id, at=record.recorded_at, detail={"reason": reason, "drawdowns": drawdowns},
    )


def _halt(record: AuditRecord) -> Notification:
    by = str(record.payload.get("by") or "unknown")
    reason = str(record.payload.get("reason") or "no reason given")
    cancelled, left = record.payload.get("cancelled") or [], record.payload.get("left") or []
    text = f"{reason}. Cancelled {len(cancelled)} resting entr{'y' if len(cancelled) == 1 else 'ies'}"
    if left:
        text += f"; {len(left)} could not be cancelled: " + "; ".join(map(str, left))
    return Notification(
        kind="governor_halted", title=f"Trading halted by {by}", text=text + ".",
        thread_id=record.thread_id, at=record.recorded_at, detail={"by": by, "reason": reason, "cancelled": cancelled, "left": left},
    )


def _position_beside(record: AuditRecord, records: Sequence[AuditRecord]) -> Position | None:
    """The bracket from the execute node's state change in the same batch, if it is there."""
    for other in records:
        if other.event == "STATE_CHANGE" and other.node == record.node and other.thread_id == record.thread_id:
            raw = (other.payload.get("orders") or {}).get("position")
            try:
                return Position.model_validate(raw) if raw else None
            except ValidationError:
                return None
    return None


def _fill(record: AuditRecord, records: Sequence[AuditRecord]) -> Notification:
    payload = record.payload
    position = _position_beside(record, records)
    price = payload.get("fill_price")
    detail = {key: payload.get(key) for key in ("bracket_id", "fill_price", "fee", "status")}
    if position is None:
        # The fill record alone knows price and bracket, not the symbol: say what is known.
        text = f"{record.verdict} filled at {_num(price)} (bracket {payload.get('bracket_id')})"
        return Notification(kind="order_filled", title=f"Order filled: {record.verdict}", text=text,
                            thread_id=record.thread_id, at=record.recorded_at, detail=detail)
    side = position.side.upper()
    text = (
        f"{side} {_num(position.quantity)} {position.symbol} filled at {_num(position.entry_price or price)} "
        f"on {position.broker}; stop {_num(position.stop)}, target {_num(position.target)}, fee {_num(payload.get('fee'))}"
    )
    detail.update(side=position.side, quantity=position.quantity, stop=position.stop, target=position.target, broker=position.broker)
    return Notification(kind="order_filled", title=f"Order filled: {side} {position.symbol}", text=text,
                        thread_id=record.thread_id, symbol=position.symbol, at=record.recorded_at, detail=detail)


def notifications_for(records: Sequence[AuditRecord]) -> list[Notification]:
    """The notifications a batch of audit records calls for, in record order; most records call for none."""
    found: list[Notification] = []
    for record in records:
        if record.event == "INTERRUPT" and record.node == "approval":
            found.append(_approval(record))
        elif record.event == "SYS_COMMAND" and record.verdict == "BREAKER_TRIPPED":
            found.append(_breaker(record))
        elif record.event == "SYS_COMMAND" and record.node == "governor" and record.verdict == "HALT":
            found.append(_halt(record))
        elif record.event == "ORDER_FILLED":
            found.append(_fill(record, records))
    return found
