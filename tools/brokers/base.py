"""What every broker offers: place a bracket idempotently, find it again, cancel, and follow it.

A bracket is an entry with its stop loss and take profit, placed as one unit
(`state.portfolio.Position`). Its client order ids derive from the run
(`bracket_id`), so a broker asked twice for the same bracket returns the one it
already has: a retried node, a resumed run or a restarted process never trades twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Protocol

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from state.portfolio import Position


class BrokerError(RuntimeError):
    """The broker refused or failed an order; the message says why (never a secret)."""


class BracketRequest(BaseModel):
    """An entry with its stop loss and take profit, placed as one unit."""

    model_config = ConfigDict(frozen=True)

    bracket_id: str = Field(min_length=1, max_length=28)  # exchanges cap client ids (Binance: 36 chars with suffix)
    thread_id: str | None = None
    symbol: str
    side: Literal["buy", "sell"]
    quantity: float = Field(gt=0)
    entry_type: Literal["market", "limit"] = "market"
    reference_price: float = Field(gt=0)  # last close the decision saw; market entries fill near it
    limit_price: float | None = Field(default=None, gt=0)
    stop: float = Field(gt=0)
    target: float = Field(gt=0)
    as_of: datetime  # the run's clock
    risk_amount: float = Field(default=0.0, ge=0)
    strategies: list[str] = []
    tags: list[str] = []
    market_source: str = ""  # where the run read its candles; the position is followed on the same market


def order_id(bracket_id: str, role: str) -> str:
    """The client order id of one leg: ``<bracket>-entry``, ``-sl``, ``-tp``, ``-flat``."""
    suffix = {"entry": "entry", "stop_loss": "sl", "take_profit": "tp", "flatten": "flat"}[role]
    return f"{bracket_id}-{suffix}"


class Broker(Protocol):
    name: str
    live: bool

    async def find(self, bracket_id: str, symbol: str | None = None) -> Position | None:
        """The bracket as the broker knows it (open and recent orders), or None if never placed."""
        ...

    async def place_bracket(self, request: BracketRequest) -> Position:
        """Place entry, stop and target; adopt the existing bracket if this id was placed before."""
        ...

    async def cancel(self, position: Position, reason: str) -> Position:
        """Cancel what still rests: an unfilled entry (position cancelled) or nothing else."""
        ...

    async def sync(self, position: Position, candles: pd.DataFrame) -> Position:
        """Bring the bracket up to date: fills of entry, stop or target (one cancels the other), mark price."""
        ...

    async def close(self) -> None: ...
