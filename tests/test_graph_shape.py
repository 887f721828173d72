"""The compiled graph's shape: what langgraph.json points at, the stage order, the fan-out."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from graphs.trade_lifecycle import build_graph
from nodes.strategies import registered_strategies

ROOT = Path(__file__).resolve().parents[1]


def test_langgraph_json_names_a_graph_compiled_without_a_checkpointer() -> None:
    config = json.loads((ROOT / "langgraph.json").read_text())
    path, attribute = config["graphs"]["trade_lifecycle"].split(":")
    module = importlib.import_module(path.removeprefix("./").removesuffix(".py").replace("/", "."))
    graph = getattr(module, attribute)
    assert graph.checkpointer is None  # `langgraph dev` refuses a graph that brings its own


def test_every_stage_is_a_node_and_gates_can_exit_to_audit() -> None:
    drawn = build_graph().get_graph()
    nodes = set(drawn.nodes)
    stages = {"sanity", "market_data", "data_quality", "regime", "structure", "support_resistance", "fibonacci",
              "confluence", "strategy", "aggregate", "verify", "risk", "approval", "execute", "audit"}
    assert stages <= nodes
    edges = {(e.source, e.target) for e in drawn.edges}
    for gate in ("sanity", "market_data", "data_quality", "aggregate", "verify", "risk", "approval"):
        assert (gate, "audit") in edges, gate
    assert ("audit", "__end__") in edges


def test_strategy_pool_is_discovered_from_the_package() -> None:
    pool = registered_strategies()
    assert {"ema_trend", "rsi_reversion"} <= set(pool)
    assert all(s.version and s.regimes for s in pool.values())


async def test_a_failing_strategy_is_isolated_and_the_rest_decide(monkeypatch) -> None:
    from datetime import UTC, datetime

    import graphs.trade_lifecycle as wiring
    import nodes.strategy as strategy_node
    from api.runs import make_request
    from nodes.strategies import Strategy
    from state import Settings
    from tools.context import build_services

    def explode(frame):
        raise ZeroDivisionError("broken on purpose")

    broken = Strategy(name="broken", version="0.0.1", kind="momentum", regimes=("RANGING",), evaluate=explode, explain=lambda r, s: "")
    pool = {**registered_strategies(), "broken": broken}
    monkeypatch.setattr(wiring, "registered_strategies", lambda: pool)
    monkeypatch.setattr(strategy_node, "registered_strategies", lambda: pool)
    settings = Settings(_env_file=None)
    request = make_request(settings, "BTC/USDT", scenario="uptrend", as_of=datetime(2026, 11, 20, 13, 37, tzinfo=UTC))
    final = await build_graph().ainvoke({"request": request}, context=build_services(settings, request))
    assert final["signals"]["broken"].error == "ZeroDivisionError: broken on purpose"
    assert final["signals"]["broken"].direction == "FLAT"
    assert "broken" not in final["consensus"].weights  # an errored signal carries no weight
    assert final["decision"].action == "BUY"


async def test_an_injected_operator_signal_goes_through_aggregation_like_any_other() -> None:
    from datetime import UTC, datetime

    from api.runs import make_request
    from state import Settings
    from state.sections import OperatorSignal
    from tools.context import build_services

    settings = Settings(_env_file=None)
    injected = OperatorSignal(direction="LONG", confidence=0.9, rationale="funding flipped negative", by="alice")
    request = make_request(settings, "BTC/USDT", scenario="range", as_of=datetime(2026, 11, 20, 13, 37, tzinfo=UTC), operator_signals=[injected])
    final = await build_graph().ainvoke({"request": request}, context=build_services(settings, request))
    signal = final["signals"]["operator:alice:0"]
    assert signal.direction == "LONG" and signal.confidence == 0.9 and "alice" in signal.rationale
    assert signal.stop < signal.entry < signal.targets[0]
    assert "operator:alice:0" in final["consensus"].weights
    assert final["consensus"].contributions["operator:alice:0"] > 0
    assert any(e.produced_by == "operator_signal:alice" and e.event == "STRATEGY_SIGNAL" for e in final["audit"])


async def test_shadow_versions_are_recorded_but_not_counted(monkeypatch) -> None:
    import dataclasses
    from datetime import UTC, datetime

    import graphs.trade_lifecycle as wiring
    import nodes.strategy as strategy_node
    from api.runs import make_request
    from state import Settings
    from tools.context import build_services

    live = registered_strategies()["ema_trend"]
    shadow = dataclasses.replace(live, version="2.0.0-rc1", shadow=True)
    pool = {**registered_strategies(), shadow.key: shadow}
    monkeypatch.setattr(wiring, "registered_strategies", lambda: pool)
    monkeypatch.setattr(strategy_node, "registered_strategies", lambda: pool)
    settings = Settings(_env_file=None)
    request = make_request(settings, "BTC/USDT", scenario="uptrend", as_of=datetime(2026, 11, 20, 13, 37, tzinfo=UTC))
    final = await build_graph().ainvoke({"request": request}, context=build_services(settings, request))
    recorded = final["signals"]["ema_trend@2.0.0-rc1"]
    assert recorded.shadow and recorded.direction == final["signals"]["ema_trend"].direction == "LONG"
    assert "ema_trend@2.0.0-rc1" not in final["consensus"].weights and "ema_trend" in final["consensus"].weights
