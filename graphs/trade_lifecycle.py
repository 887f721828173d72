"""The per-symbol trade lifecycle, wired from the nodes. Wiring only: no logic lives here.

sanity → market_data → data_quality → {regime, structure, key_levels, volume, alt_data}
→ {support_resistance, fibonacci, anchored_vwap}
→ confluence → strategy ×N, operator_signal ×M (Send) → aggregate → verify → risk → approval → execute → audit

Every gate that writes a decision (HOLD / REJECT) sends the run straight to audit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.cache.base import BaseCache
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore
from langgraph.types import CachePolicy, Send

from nodes.aggregate import aggregate
from nodes.alt_data import alt_data
from nodes.anchored_vwap import anchored_vwap
from nodes.approval import approval
from nodes.audit import audit
from nodes.confluence import confluence
from nodes.data_quality import data_quality
from nodes.execute import execute
from nodes.fibonacci import fibonacci
from nodes.key_levels import key_levels
from nodes.market_data import market_data
from nodes.operator_signal import operator_signal
from nodes.regime import regime
from nodes.risk import risk
from nodes.sanity import sanity
from nodes.strategies import registered_strategies
from nodes.strategy import strategy
from nodes.structure import structure
from nodes.support_resistance import support_resistance
from nodes.verify import verify
from nodes.volume import volume
from state import AnalysisState
from state.sections import FeaturesSection
from tools.context import Services
from tools.screen_cache import screen_key

FEATURE_NODES = ["regime", "structure", "key_levels", "volume", "alt_data"]
LEVEL_NODES = ["support_resistance", "fibonacci", "anchored_vwap"]
RECURSION_LIMIT = 64
# Nodes that read or change the book, the operator's queue or the trail always run; everything a
# scan's screen computed before them (analysis, verification) a node cache may hand on.
ACTING_NODES = {"risk", "approval", "execute", "audit"}


# Routers are coroutines: in an async run LangGraph hands a plain function to a thread pool, and
# that hop cost more than the routing itself (~0.3 ms each, eight per run).
def unless_decided(*next_nodes: str) -> Callable[[AnalysisState], Awaitable[list[str] | str]]:
    """Route on, or to audit once a gate has written a decision."""

    async def route(state: AnalysisState) -> list[str] | str:
        return "audit" if state.get("decision") is not None else list(next_nodes)

    return route


async def fan_out_strategies(state: AnalysisState) -> list[Send] | str:
    request = state["request"]
    task = {"request": request, "market": state["market"], "features": state.get("features") or FeaturesSection()}
    sends = [Send("strategy", {**task, "strategy": name}) for name in registered_strategies()]
    sends += [
        Send("operator_signal", {**task, "operator_signal": injected, "index": i})
        for i, injected in enumerate(request.operator_signals)
    ]
    return sends or "aggregate"  # an empty pool holds for want of signals, it does not stall


def build_graph(
    checkpointer: BaseCheckpointSaver | None = None,
    store: BaseStore | None = None,
    context_schema: type | None = Services,
    cache: BaseCache | None = None,
    **compile_options: Any,
) -> CompiledStateGraph:
    """`cache` serves the analysis and verification nodes (never the acting ones); see tools/screen_cache.py."""
    builder = StateGraph(AnalysisState, context_schema=context_schema)
    analysis_cache = CachePolicy(key_func=screen_key) if cache is not None else None
    for name, node in [
        ("sanity", sanity),
        ("market_data", market_data),
        ("data_quality", data_quality),
        ("regime", regime),
        ("structure", structure),
        ("key_levels", key_levels),
        ("volume", volume),
        ("alt_data", alt_data),
        ("support_resistance", support_resistance),
        ("fibonacci", fibonacci),
        ("anchored_vwap", anchored_vwap),
        ("confluence", confluence),
        ("strategy", strategy),
        ("operator_signal", operator_signal),
        ("aggregate", aggregate),
        ("verify", verify),
        ("risk", risk),
        ("approval", approval),
        ("execute", execute),
        ("audit", audit),
    ]:
        builder.add_node(name, node, cache_policy=None if name in ACTING_NODES else analysis_cache)

    builder.add_edge(START, "sanity")
    builder.add_conditional_edges("sanity", unless_decided("market_data"), ["market_data", "audit"])
    builder.add_conditional_edges("market_data", unless_decided("data_quality"), ["data_quality", "audit"])
    builder.add_conditional_edges("data_quality", unless_decided(*FEATURE_NODES), [*FEATURE_NODES, "audit"])
    for level_node in LEVEL_NODES:
        builder.add_edge(FEATURE_NODES, level_node)
    builder.add_edge(LEVEL_NODES, "confluence")
    builder.add_conditional_edges("confluence", fan_out_strategies, ["strategy", "operator_signal", "aggregate"])
    builder.add_edge("strategy", "aggregate")
    builder.add_edge("operator_signal", "aggregate")
    builder.add_conditional_edges("aggregate", unless_decided("verify"), ["verify", "audit"])
    builder.add_conditional_edges("verify", unless_decided("risk"), ["risk", "audit"])
    builder.add_conditional_edges("risk", unless_decided("approval"), ["approval", "audit"])
    builder.add_conditional_edges("approval", unless_decided("execute"), ["execute", "audit"])
    builder.add_edge("execute", "audit")
    builder.add_edge("audit", END)
    return builder.compile(checkpointer=checkpointer, store=store, cache=cache, name="trade_lifecycle", **compile_options)




# For `langgraph dev` / Studio: compiled without a checkpointer, the server brings its own.
# No context schema for the served graph: the langgraph server builds the context from JSON and
# cannot build our Services; its nodes then get default services (paper, built-in data).
graph = build_graph(context_schema=None)
