"""The checkpoint serializer: our sections dumped by pydantic, the rest as LangGraph does it, and nothing changed on the way back."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ormsgpack
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from pydantic import BaseModel

from api.runs import make_request
from graphs.trade_lifecycle import RECURSION_LIMIT, build_graph
from state import Settings, serializable_models
from state.sections import AuditEvent, MarketSection
from tools.checkpoint_serde import TAG, SectionSerializer, plain_exact
from tools.context import ServiceHub
from tools.storage import checkpoint_serializer

CLOCK = datetime(2026, 11, 20, 13, 37, tzinfo=UTC)


class Inner(BaseModel):
    level: float
    seen: datetime


class Outer(BaseModel):
    name: str
    levels: list[float]
    inner: list[Inner]
    by_key: dict[str, Inner]


class Loose(BaseModel):
    detail: dict[str, Any]


def serializer() -> SectionSerializer:
    return SectionSerializer([Inner, Outer, Loose])


async def final_states(tmp_path: Path) -> list[dict[str, Any]]:
    settings = Settings(_env_file=None, home=tmp_path)
    hub, graph = ServiceHub(settings), build_graph()
    states = []
    # Natural markets end at the consensus or verification; the uptrend (observe mode: no approval asked) fills an order.
    for symbol, options in [("SYN0101/USDT", {}), ("ETH/USDT", {}), ("BTC/USDT", {"scenario": "uptrend"})]:
        request = make_request(settings, symbol, as_of=CLOCK, **options)
        states.append(await graph.ainvoke({"request": request}, {"recursion_limit": RECURSION_LIMIT}, context=hub.for_request(request)))
    return states


async def test_every_section_of_real_runs_comes_back_equal(tmp_path: Path) -> None:
    serde, legacy = checkpoint_serializer(), JsonPlusSerializer(allowed_msgpack_modules=serializable_models())
    states = await final_states(tmp_path)
    assert any("orders" in state for state in states), "the uptrend run should reach execution"
    for state in states:
        for channel, value in state.items():
            kind, blob = serde.dumps_typed(value)
            assert serde.loads_typed((kind, blob)) == value, channel
            # The sections take the fast path; the audit list (events carry `Any` details) stays with LangGraph's.
            assert kind.startswith(TAG) == (channel != "audit"), (channel, kind)
            # and what LangGraph's serializer wrote before still loads
            assert serde.loads_typed(legacy.dumps_typed(value)) == value, channel


def test_nan_infinities_and_datetimes_survive() -> None:
    serde = serializer()
    value = Outer(
        name="x",
        levels=[math.nan, math.inf, -math.inf, 1.5],
        inner=[Inner(level=math.nan, seen=CLOCK)],
        by_key={"a": Inner(level=-math.inf, seen=CLOCK)},
    )
    kind, blob = serde.dumps_typed(value)
    assert kind == f"{TAG}:model:{Outer.__module__}.Outer"
    back = serde.loads_typed((kind, blob))
    assert isinstance(back, Outer) and back.name == "x"
    assert math.isnan(back.levels[0]) and back.levels[1:] == [math.inf, -math.inf, 1.5]
    assert math.isnan(back.inner[0].level) and back.inner[0].seen == CLOCK
    assert back.by_key["a"].level == -math.inf and isinstance(back.by_key["a"], Inner)


def test_containers_of_one_section_class_take_the_fast_path_mixed_ones_do_not() -> None:
    serde = serializer()
    first, second = Inner(level=1.0, seen=CLOCK), Inner(level=2.0, seen=CLOCK)
    kind, blob = serde.dumps_typed([first, second])
    assert kind.startswith(f"{TAG}:list:") and serde.loads_typed((kind, blob)) == [first, second]
    kind, blob = serde.dumps_typed({"a": first})
    assert kind.startswith(f"{TAG}:dict:") and serde.loads_typed((kind, blob)) == {"a": first}
    mixed = [first, Outer(name="y", levels=[], inner=[], by_key={})]
    kind, blob = serde.dumps_typed(mixed)
    assert kind == "msgpack" and serde.loads_typed((kind, blob)) == mixed
    assert serde.dumps_typed(None) == ("null", b"")


def test_models_with_any_fields_keep_their_python_values() -> None:
    """A datetime in an `Any` field would come back as text from plain values: such models stay with LangGraph's msgpack."""
    assert not plain_exact(Loose) and not plain_exact(AuditEvent) and plain_exact(MarketSection)
    serde = serializer()
    value = Loose(detail={"at": CLOCK, "count": 3})
    kind, blob = serde.dumps_typed(value)
    assert kind == "msgpack"
    assert serde.loads_typed((kind, blob)).detail["at"] == CLOCK


def test_unknown_classes_come_back_as_plain_values_and_stale_ones_unvalidated() -> None:
    serde = serializer()
    kind, blob = serde.dumps_typed(Inner(level=1.0, seen=CLOCK))
    # A class outside the allowlist is never imported: its values come back as they were stored.
    assert serde.loads_typed((kind.replace(".Inner", ".Elsewhere"), blob)) == {"level": 1.0, "seen": CLOCK.isoformat()}
    for malformed in (f"{TAG}:model", f"{TAG}:tuple:{Inner.__module__}.Inner"):
        assert serde.loads_typed((malformed, blob)) == {"level": 1.0, "seen": CLOCK.isoformat()}
    # Values that no longer validate as their class (the class changed since) are built as stored, as LangGraph does.
    stored = ormsgpack.packb({"level": "high", "seen": CLOCK.isoformat()})
    revived = serde.loads_typed((kind, stored))
    assert isinstance(revived, Inner) and revived.level == "high"
