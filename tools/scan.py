"""What the scanner graph's nodes reach through the runtime context: the watchlist, the governor, a dispatcher.

The dispatcher decides one symbol (one lifecycle thread) wherever it runs it:
in this process, in local worker processes, or on workers of a distributed
task engine. The scanner never knows which; it bounds how many are in flight.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from langgraph.graph.state import CompiledStateGraph

from state import Settings
from state.scan import ScanEntry, ScanRequest
from state.sections import RunRequest
from tools.ledger import Ledger
from tools.market_data import MarketDataSource, MarketInfo


class SymbolDispatcher(Protocol):
    async def decide(self, request: ScanRequest, symbol: str, as_of: datetime | None) -> ScanEntry:
        """Run (or find, when it already ran) the symbol's lifecycle in this scan; never raises for one symbol."""
        ...


def scan_thread_id(scan_id: str, symbol: str) -> str:
    """One thread per (scan, symbol): a redelivered or retried symbol lands on its own thread again."""
    return f"{scan_id}-{symbol.replace('/', '-').replace(':', '-').lower()}"


@dataclass(frozen=True)
class ScanServices:
    settings: Settings
    dispatcher: SymbolDispatcher
    # The kill switch, read afresh before each symbol is dispatched: a halt acts at once.
    ledger: Ledger
    # The market listing for `top N` (the source the scan's runs read).
    markets: Callable[[ScanRequest], MarketDataSource]


def top_markets(listed: list[MarketInfo], *, top: int, quote: str, min_quote_volume: float) -> list[str]:
    """The `top` active spot markets quoted in `quote`, by 24h quote volume, above the floor.

    A market whose volume is unknown passes no floor above zero and ranks last.
    """
    eligible = [
        m for m in listed
        if m.active and m.type == "spot" and m.quote == quote and (m.quote_volume_24h or 0.0) >= min_quote_volume
        and (m.quote_volume_24h is not None or min_quote_volume == 0)
    ]
    eligible.sort(key=lambda m: (-(m.quote_volume_24h or -1.0), m.symbol))
    return [m.symbol for m in eligible[:top]]


def entry_from_values(symbol: str, thread_id: str, values: dict, *, paused: bool, elapsed_ms: float | None = None, worker: str | None = None) -> ScanEntry:
    """A scan entry from a lifecycle's final state values."""
    decision = values.get("decision")
    consensus = values.get("consensus")
    return ScanEntry(
        symbol=symbol,
        thread_id=thread_id,
        status="paused" if paused else ("decided" if decision is not None else "failed"),
        decision=decision.action if decision is not None else None,
        stage=decision.stage if decision is not None else None,
        reason=(decision.reason if decision is not None else ("waiting for approval" if paused else "the run ended without a decision"))[:500],
        consensus=consensus.direction if consensus is not None else None,
        confidence=consensus.confidence if consensus is not None else None,
        score=consensus.net_score if consensus is not None else None,
        actionable=consensus is not None and consensus.direction != "FLAT" and (decision is None or decision.stage != "aggregate"),
        elapsed_ms=elapsed_ms,
        worker=worker,
    )


@dataclass
class GraphDispatcher:
    """Runs the lifecycle graph in this process without persisting its threads (`langgraph dev`'s scanner).

    The served scanner cannot reach our database, so its symbols' runs are not
    stored; `aitrader scan` and the API dispatch through `api.scan` instead.
    """

    graph: CompiledStateGraph
    services_for: Callable[[RunRequest], object]
    settings: Settings

    async def decide(self, request: ScanRequest, symbol: str, as_of: datetime | None) -> ScanEntry:
        from tools.requests import make_request

        thread_id = scan_thread_id(request.scan_id, symbol)
        started = time.perf_counter()
        try:
            run = make_request(self.settings, symbol, **{**request.run_options(), "as_of": as_of})
            values = await self.graph.ainvoke({"request": run}, {"configurable": {"thread_id": thread_id}}, context=self.services_for(run))
        except Exception as error:
            return ScanEntry(symbol=symbol, thread_id=thread_id, status="failed", reason=f"{type(error).__name__}: {error}"[:500])
        return entry_from_values(symbol, thread_id, values, paused=False, elapsed_ms=(time.perf_counter() - started) * 1000)
