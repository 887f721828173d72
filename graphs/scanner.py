"""The governor's scanner: a watchlist fanned out to one lifecycle thread per symbol, ranked at the end.

resolve_watchlist → scan_symbol ×N (Send; `max_concurrency` in the config bounds how many run) → rank

Each symbol's lifecycle runs in its own thread through the context's dispatcher
(this process, local worker processes, or a distributed task engine); the scan's
own thread keeps only the watchlist, the entries and the ranked summary.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Send

import nodes.scan
from graphs.trade_lifecycle import build_graph
from nodes.scan import rank, resolve_watchlist, scan_symbol
from state import Settings
from state.scan import ScanState
from tools.context import build_services
from tools.ledger import memory_ledger
from tools.market_data import open_source
from tools.scan import GraphDispatcher, ScanServices

# Recursion is by supersteps, not symbols: three steps whatever the watchlist's length.
SCAN_RECURSION_LIMIT = 16


async def fan_out_symbols(state: ScanState) -> list[Send] | str:
    request, as_of = state["request"], state["as_of"]
    sends = [Send("scan_symbol", {"request": request, "as_of": as_of, "symbol": symbol}) for symbol in state.get("watchlist") or []]
    return sends or "rank"


def build_scanner(checkpointer: BaseCheckpointSaver | None = None, context_schema: type | None = ScanServices, **compile_options: Any) -> CompiledStateGraph:
    builder = StateGraph(ScanState, context_schema=context_schema)
    builder.add_node("resolve_watchlist", resolve_watchlist)
    builder.add_node("scan_symbol", scan_symbol)
    builder.add_node("rank", rank, defer=True)
    builder.add_edge(START, "resolve_watchlist")
    builder.add_conditional_edges("resolve_watchlist", fan_out_symbols, ["scan_symbol", "rank"])
    builder.add_edge("scan_symbol", "rank")
    builder.add_edge("rank", END)
    return builder.compile(checkpointer=checkpointer, name="scanner", **compile_options)


@cache
def _studio_services() -> ScanServices:
    """`langgraph dev` cannot build our services: symbols run in-process on defaults, not persisted."""
    settings = Settings()
    lifecycle = build_graph(checkpointer=False, context_schema=None)
    return ScanServices(
        settings=settings,
        dispatcher=GraphDispatcher(lifecycle, lambda request: build_services(settings, request), settings),
        ledger=memory_ledger(),
        markets=lambda request: open_source(request.source or settings.source, scenario=request.scenario, data_dir=request.data_dir, exchange=request.exchange or settings.exchange),
    )


nodes.scan.studio_services = _studio_services
# For `langgraph dev` / Studio: compiled without a checkpointer, the server brings its own.
graph = build_scanner(context_schema=None)
