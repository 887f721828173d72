"""The paper broker: brackets kept in the ledger, filled against the candles that follow.

The ledger is this broker's exchange: placing a bracket id that is already
stored returns the stored bracket, so a retried, resumed or restarted
execution adopts its order instead of placing a second one.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from state.portfolio import Position
from tools.brokers.base import BracketRequest
from tools.brokers.paper_fills import cancel_pending, open_bracket, simulate
from tools.ledger import Ledger


class PaperBroker:
    name = "paper"
    live = False

    def __init__(self, ledger: Ledger, *, fee_rate: float, slippage_bps: float) -> None:
        self._ledger = ledger
        self._fee_rate = fee_rate
        self._slippage_bps = slippage_bps

    async def find(self, bracket_id: str, symbol: str | None = None) -> Position | None:
        return await self._ledger.position(bracket_id)

    async def place_bracket(self, request: BracketRequest) -> Position:
        existing = await self._ledger.position(request.bracket_id)
        if existing is not None:
            return existing
        position = open_bracket(request, fee_rate=self._fee_rate, slippage_bps=self._slippage_bps, broker=self.name)
        return await self._ledger.insert(position)  # a racing twin's insert wins and is returned

    async def cancel(self, position: Position, reason: str) -> Position:
        kind = reason if reason in ("halt", "rollback") else "cancelled"
        cancelled = cancel_pending(position, reason=kind, at=datetime.now(UTC))  # type: ignore[arg-type]
        if cancelled != position:
            await self._ledger.update(cancelled)
        return cancelled

    async def sync(self, position: Position, candles: pd.DataFrame) -> Position:
        updated = simulate(position, candles, fee_rate=self._fee_rate, slippage_bps=self._slippage_bps)
        if updated != position:
            await self._ledger.update(updated)
        return updated

    async def close(self) -> None:
        return None
