"""L4 an operator's injected signal, turned into a Signal that aggregation, verification and risk treat like any other."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from nodes.common import event, services
from state.sections import OperatorSignal, Signal
from tools.context import Services

NODE = "operator_signal"
# Levels the operator left out get the same ATR distances the trend strategy uses.
STOP_ATR = 2.0
TARGET_ATR = 3.0


async def operator_signal(task: dict[str, Any], runtime: Runtime[Services]) -> dict[str, Any]:
    request, market = task["request"], task["market"]
    injected = OperatorSignal.model_validate(task["operator_signal"])
    key = f"operator:{injected.by}:{task['index']}"
    timeframe = request.decision_timeframe
    loaded = await services(runtime, request).frames.get(request.symbol, timeframe, market.as_of)
    atr = float(loaded.frame["atr"].iloc[-1])
    entry = market.last_price
    sign = 1 if injected.direction == "LONG" else -1
    signal = Signal(
        as_of=market.as_of,
        produced_by=f"{NODE}:{injected.by}",
        strategy=key,
        version="operator",
        kind="operator",
        direction=injected.direction,
        confidence=injected.confidence,
        entry=entry,
        stop=injected.stop if injected.stop is not None else entry - sign * STOP_ATR * atr,
        targets=[injected.target if injected.target is not None else entry + sign * TARGET_ATR * atr],
        timeframe=timeframe,
        rationale=f"injected by {injected.by}: {injected.rationale}",
    )
    detail = {"by": injected.by, "confidence": injected.confidence}
    return {"signals": {key: signal}, "audit": [event(signal.produced_by, "STRATEGY_SIGNAL", signal.direction, market.as_of, detail)]}
