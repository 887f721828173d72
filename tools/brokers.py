"""Brokers: where an approved order becomes orders. Paper by default.

Every order carries a client order id derived from the run, and placing an
id that already exists returns the existing orders: a retried or resumed
execution never trades twice.
"""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from state.sections import Order


class BracketRequest(BaseModel):
    """An entry with its stop loss and take profit, placed as one unit."""

    model_config = ConfigDict(frozen=True)

    client_order_id: str
    symbol: str
    side: Literal["buy", "sell"]
    quantity: float = Field(gt=0)
    reference_price: float = Field(gt=0)
    stop: float = Field(gt=0)
    target: float = Field(gt=0)


class Broker(Protocol):
    name: str

    async def place_bracket(self, request: BracketRequest) -> list[Order]: ...


class PaperBroker:
    """Fills market entries at the reference candle's close, moved against us by slippage, minus fees."""

    name = "paper"

    def __init__(self, *, fee_rate: float, slippage_bps: float) -> None:
        self._fee_rate = fee_rate
        self._slippage = slippage_bps / 10_000
        self._brackets: dict[str, list[Order]] = {}

    async def place_bracket(self, request: BracketRequest) -> list[Order]:
        existing = self._brackets.get(request.client_order_id)
        if existing is not None:
            return existing
        sign = 1 if request.side == "buy" else -1
        fill = request.reference_price * (1 + sign * self._slippage)
        exit_side: Literal["buy", "sell"] = "sell" if request.side == "buy" else "buy"
        orders = [
            Order(
                client_order_id=f"{request.client_order_id}-entry",
                role="entry",
                side=request.side,
                type="market",
                quantity=request.quantity,
                price=None,
                status="filled",
                fill_price=fill,
                fee=fill * request.quantity * self._fee_rate,
            ),
            # Stop and target are one-cancels-the-other: whichever fills first cancels its twin.
            Order(
                client_order_id=f"{request.client_order_id}-sl",
                role="stop_loss",
                side=exit_side,
                type="stop",
                quantity=request.quantity,
                price=request.stop,
                status="open",
            ),
            Order(
                client_order_id=f"{request.client_order_id}-tp",
                role="take_profit",
                side=exit_side,
                type="limit",
                quantity=request.quantity,
                price=request.target,
                status="open",
            ),
        ]
        self._brackets[request.client_order_id] = orders
        return orders
