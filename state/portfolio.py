"""What outlives a run: positions (one bracket each), the governor's flags, and the figures risk judges by.

These are boundary models between the ledger (database), the brokers and the
risk rules; the risk section in a run's state copies the figures it decided on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from state.base import Model

Side = Literal["buy", "sell"]
OrderRole = Literal["entry", "stop_loss", "take_profit"]
OrderStatus = Literal["open", "filled", "cancelled", "rejected"]
PositionStatus = Literal["pending", "open", "closed", "cancelled"]
ExitReason = Literal["stop", "target", "cancelled", "halt", "rollback"]
DrawdownPeriod = Literal["daily", "weekly", "monthly"]


class Order(Model):
    client_order_id: str
    role: OrderRole
    side: Side
    type: Literal["market", "limit", "stop"]
    quantity: float
    price: float | None
    status: OrderStatus
    fill_price: float | None = None
    fee: float = 0.0
    filled_at: datetime | None = None
    exchange_order_id: str | None = None  # the exchange's own id, for a live broker


class Position(Model):
    """One bracket (entry, stop loss, take profit) and what became of it.

    ``pending``: the entry has not filled (a resting limit); ``open``: entry filled,
    stop and target resting, one cancels the other; ``closed``: stop or target filled;
    ``cancelled``: the entry never filled (halt, rollback, expiry).
    """

    bracket_id: str  # the client order id every order of the bracket derives from
    thread_id: str | None = None
    symbol: str
    broker: str
    side: Side
    quantity: float = Field(gt=0)
    entry_type: Literal["market", "limit"] = "market"
    limit_price: float | None = None
    entry_price: float | None = None  # average fill, once filled
    stop: float = Field(gt=0)
    target: float = Field(gt=0)
    status: PositionStatus
    created_at: datetime  # the run's clock when the bracket was placed (market time)
    opened_at: datetime | None = None
    closed_at: datetime | None = None
    exit_price: float | None = None
    exit_reason: ExitReason | None = None
    fees: float = 0.0
    realized_pnl: float | None = None  # net of fees, once closed
    mark_price: float | None = None
    marked_at: datetime | None = None
    unrealized_pnl: float | None = None  # at the mark, for open positions
    risk_amount: float = 0.0  # loss at the stop when it was sized
    strategies: list[str] = []  # name@version of the agreeing strategies
    tags: list[str] = []  # sector / narrative tags of the symbol
    orders: list[Order] = []
    # The market the deciding run read (source|scenario|data_dir|exchange): fills are simulated on it.
    market_source: str = ""

    @property
    def is_live(self) -> bool:
        return self.status in ("pending", "open")

    def open_risk(self) -> float:
        """Loss if the stop fills from here: zero once the stop sits beyond the entry."""
        if not self.is_live:
            return 0.0
        entry = self.entry_price or self.limit_price or 0.0
        sign = 1 if self.side == "buy" else -1
        return max(0.0, sign * (entry - self.stop) * self.quantity)

    def notional(self) -> float:
        price = self.mark_price or self.entry_price or self.limit_price or 0.0
        return price * self.quantity if self.is_live else 0.0


class GovernorState(Model):
    """L0: one row for the whole installation, read by every run's risk and execution."""

    halted: bool = False
    reason: str = ""
    changed_by: str = "system"
    changed_at: datetime | None = None
    disabled_strategies: dict[str, str] = {}  # strategy name -> why
    capital_budget: float | None = Field(default=None, gt=0)  # most notional the open book may hold


class Exposure(Model):
    """An open or pending position as risk sees it."""

    symbol: str
    side: Side
    notional: float = Field(ge=0)
    risk_amount: float = Field(ge=0)
    tags: list[str] = []


class PortfolioView(Model):
    """Everything the portfolio checks need, gathered before the rules run (the rules do no I/O)."""

    equity: float = Field(gt=0)
    open: list[Exposure] = []
    # Returns correlation of the new symbol with each open symbol; missing = could not be measured.
    correlations: dict[str, float | None] = {}
    drawdowns: dict[DrawdownPeriod, float] = {}  # fraction of the period's peak equity, >= 0
    capital_budget: float | None = None
    halted: bool = False
    halt_reason: str = ""


class TradeProposal(Model):
    """The consensus trade risk is asked to size."""

    symbol: str
    side: Side
    entry: float | None
    stop: float | None
    target: float | None
    risk_fraction: float  # already the smaller of the setting and the consensus' Kelly proposal
    tags: list[str] = []
    atr_pct: float | None = None  # decision-timeframe ATR as % of price
    regime: str | None = None
    amount_min: float | None = None
    cost_min: float | None = None
    amount_precision: float | None = None  # step size, e.g. 0.001
