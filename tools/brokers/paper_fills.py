"""Paper fills: how a bracket (entry, stop loss, take profit) would have traded over candles.

Pure functions, no I/O, so the paper broker, replays and tests all get the same
answer from the same candles.

Conventions:

- Candle time. A candle is labelled by its OPEN time. The run decides at
  ``created_at`` (its clock), when the decision candle has already closed, so a
  candle opening before ``created_at`` is history: part or all of it traded
  before the bracket existed. A candle counts once its open time is
  ``>= created_at`` and, after a first pass, ``> marked_at``: ``marked_at`` is
  the open time of the last candle already processed, so a repeated call over
  overlapping candles never applies a candle twice (it is idempotent).
- Fills. A market entry and a stop (stop -> market) move ``slippage_bps``
  against us; a limit (limit entry, take profit) fills at its price or better
  and takes no slippage. Every fill pays ``fee_rate`` on its notional.
- Gaps. If a candle OPENS beyond a level, the open is the fill: the open is
  known to be the candle's first price.
- Ambiguity. Order inside a candle is unknown. If its range touches both stop
  and target (open between them), the stop is assumed to have filled first: the
  worse outcome for us, never a flattering one.
- NaN candles are skipped: never fill, nor mark, on a price we do not have.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Literal

import pandas as pd

from state.portfolio import Order, OrderRole, Position, PositionStatus
from tools.brokers.base import BracketRequest, order_id

_PRICES = ("open", "high", "low", "close")


def _slip(slippage_bps: float) -> float:
    return slippage_bps / 10_000.0


def _sign(position: Position) -> int:
    return 1 if position.side == "buy" else -1


def _with_order(orders: list[Order], role: OrderRole, **changes: object) -> list[Order]:
    return [o.model_copy(update=changes) if o.role == role else o for o in orders]


def _utc(moment: datetime) -> pd.Timestamp:
    # Positions may carry naive datetimes (read back from a store); the run's clock is UTC.
    ts = pd.Timestamp(moment)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def open_bracket(request: BracketRequest, *, fee_rate: float, slippage_bps: float, broker: str = "paper") -> Position:
    """A new bracket: a market entry filled at once, or a limit entry resting; stop and target resting."""
    exit_side = "sell" if request.side == "buy" else "buy"
    qty = request.quantity
    status: PositionStatus
    opened_at: datetime | None
    entry_price: float | None
    if request.entry_type == "market":
        sign = 1 if request.side == "buy" else -1
        fill = request.reference_price * (1 + sign * _slip(slippage_bps))  # against us
        fee = fill * qty * fee_rate
        entry = Order(client_order_id=order_id(request.bracket_id, "entry"), role="entry", side=request.side,
                      type="market", quantity=qty, price=None, status="filled", fill_price=fill, fee=fee,
                      filled_at=request.as_of)
        status, opened_at, entry_price = "open", request.as_of, fill
    else:
        if request.limit_price is None:
            raise ValueError(f"bracket {request.bracket_id}: a limit entry needs limit_price")
        entry = Order(client_order_id=order_id(request.bracket_id, "entry"), role="entry", side=request.side,
                      type="limit", quantity=qty, price=request.limit_price, status="open")
        status, opened_at, entry_price, fee = "pending", None, None, 0.0
    stop = Order(client_order_id=order_id(request.bracket_id, "stop_loss"), role="stop_loss", side=exit_side,
                 type="stop", quantity=qty, price=request.stop, status="open")
    take = Order(client_order_id=order_id(request.bracket_id, "take_profit"), role="take_profit", side=exit_side,
                 type="limit", quantity=qty, price=request.target, status="open")
    return Position(
        bracket_id=request.bracket_id, thread_id=request.thread_id, symbol=request.symbol, broker=broker,
        side=request.side, quantity=qty, entry_type=request.entry_type,
        limit_price=request.limit_price if request.entry_type == "limit" else None,
        stop=request.stop, target=request.target, created_at=request.as_of, risk_amount=request.risk_amount,
        strategies=list(request.strategies), tags=list(request.tags), orders=[entry, stop, take],
        market_source=request.market_source,
        status=status, opened_at=opened_at, entry_price=entry_price, fees=fee,
    )


def _exit(position: Position, ref: float, high: float, low: float,
          slip: float) -> tuple[Literal["stop", "target"], float] | None:
    """Which leg of the OCO fills on this (part of a) candle, and at what price; None if neither.

    ``ref`` is the first price of the part considered (the candle open, or the entry
    fill on the candle the entry filled in); ``high``/``low`` bound what follows it.
    """
    stop, target = position.stop, position.target
    if position.side == "buy":
        if ref <= stop:  # gapped through the stop: out at the first price
            return "stop", ref * (1 - slip)
        if ref >= target:  # gapped through the target: a limit fills at the better open
            return "target", ref
        if low <= stop:  # checked before the target: if both are in range, assume the worse
            return "stop", stop * (1 - slip)
        if high >= target:
            return "target", target
        return None
    if ref >= stop:
        return "stop", ref * (1 + slip)
    if ref <= target:
        return "target", ref
    if high >= stop:
        return "stop", stop * (1 + slip)
    if low <= target:
        return "target", target
    return None


def _close(position: Position, reason: Literal["stop", "target"], price: float, at: datetime,
           fee_rate: float) -> Position:
    fee = price * position.quantity * fee_rate
    fees = position.fees + fee
    entry = position.entry_price if position.entry_price is not None else price
    won, lost = ("stop_loss", "take_profit") if reason == "stop" else ("take_profit", "stop_loss")
    orders = _with_order(position.orders, won, status="filled", fill_price=price, fee=fee, filled_at=at)
    orders = _with_order(orders, lost, status="cancelled")  # one cancels the other
    return position.model_copy(update={
        "status": "closed", "exit_price": price, "exit_reason": reason, "closed_at": at, "fees": fees,
        "realized_pnl": _sign(position) * (price - entry) * position.quantity - fees, "orders": orders,
    })


def simulate(position: Position, candles: pd.DataFrame, *, fee_rate: float, slippage_bps: float) -> Position:
    """Apply the candles not yet seen (see the candle-time rule above) to a live bracket, then mark it."""
    if position.status not in ("pending", "open") or candles.empty:
        return position
    if not isinstance(candles.index, pd.DatetimeIndex):
        raise TypeError("candles need a DatetimeIndex of candle open times")
    index = candles.index.tz_localize("UTC") if candles.index.tz is None else candles.index.tz_convert("UTC")
    frame = candles.set_axis(index).sort_index()
    new = frame.index >= _utc(position.created_at)
    if position.marked_at is not None:
        new &= frame.index > _utc(position.marked_at)
    frame = frame.loc[new, list(_PRICES)].dropna()
    if frame.empty:
        return position  # nothing new: leaving the mark alone keeps marked_at from moving backwards

    slip = _slip(slippage_bps)
    sign = _sign(position)
    for ts, o, h, lo, c in frame.itertuples(name=None):
        if position.status not in ("pending", "open"):
            break
        at = ts.to_pydatetime()
        ref, high, low = o, h, lo
        if position.status == "pending":
            limit = position.limit_price
            if limit is None or not math.isfinite(limit):
                raise ValueError(f"bracket {position.bracket_id}: a pending entry without a limit price")
            touched = lo <= limit if position.side == "buy" else h >= limit
            if not touched:
                continue
            # A limit fills at its price, or at the open if the candle opened beyond it (better for us).
            fill = min(o, limit) if position.side == "buy" else max(o, limit)
            fee = fill * position.quantity * fee_rate
            position = position.model_copy(update={
                "status": "open", "opened_at": at, "entry_price": fill, "fees": position.fees + fee,
                "orders": _with_order(position.orders, "entry", status="filled", fill_price=fill, fee=fee,
                                      filled_at=at),
            })
            if fill != o:
                # Filled inside the candle: only the part after the fill may exit. Assume the adverse
                # extreme came after the fill (conservative); credit the favourable side only as far
                # as the close proves the price went after the fill.
                ref = fill
                high, low = (max(fill, c), lo) if position.side == "buy" else (h, min(fill, c))
        hit = _exit(position, ref, high, low, slip)
        if hit is not None:
            position = _close(position, hit[0], hit[1], at, fee_rate)

    last_at, last_close = frame.index[-1].to_pydatetime(), float(frame["close"].iloc[-1])
    unrealized = None
    if position.status == "open" and position.entry_price is not None:
        # position.fees is the entry fee alone while open; the exit fee is not paid yet.
        unrealized = sign * (last_close - position.entry_price) * position.quantity - position.fees
    return position.model_copy(update={"mark_price": last_close, "marked_at": last_at, "unrealized_pnl": unrealized})


def cancel_pending(position: Position, *, reason: Literal["cancelled", "halt", "rollback"], at: datetime) -> Position:
    """Cancel a bracket whose entry has not filled; anything else is returned unchanged.

    An open position keeps its stop and target: pulling them would leave a filled
    position unprotected. Closing one is an explicit flatten, never a side effect of a cancel.
    """
    if position.status != "pending":
        return position
    orders = [o.model_copy(update={"status": "cancelled"}) if o.status == "open" else o for o in position.orders]
    return position.model_copy(update={"status": "cancelled", "exit_reason": reason, "closed_at": at,
                                       "orders": orders, "unrealized_pnl": None})
