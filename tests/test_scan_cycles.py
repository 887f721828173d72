"""A scan's next cycle reuses what the nodes derived from the frames that did not change, and gets the same answers.

The frame cache hands a run the same frame until its timeframe's next close; the nodes keep
their per-frame answers on it (`IndicatorFrame.derive`). Local worker processes send each
symbol to its home worker, so the next cycle finds them. Real worker processes, real
PostgreSQL for the pool (tests/test_scan_cli.py); the lifecycles run on the built-in data.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from api.audit_trail import jsonable
from api.runs import make_request
from graphs.trade_lifecycle import RECURSION_LIMIT, build_graph
from state import Settings
from tools.context import ServiceHub
from tools.frames import IndicatorFrame

CLOCK = datetime(2026, 11, 20, 13, 37, tzinfo=UTC)
NEXT_CLOSE = CLOCK + timedelta(minutes=5)
# Every section a run derives from its frames (the clock-stamped ones compare as of the same clock).
DERIVED_SECTIONS = ("market", "quality", "features", "levels", "signals", "consensus", "decision")


def test_derive_computes_once_per_key_and_keeps_nothing_of_a_failure() -> None:
    import pandas as pd

    loaded = IndicatorFrame(timeframe="1h", frame=pd.DataFrame({"close": [1.0, 2.0]}))
    calls: list[str] = []

    def last_close(frame: IndicatorFrame) -> float:
        calls.append("close")
        return float(frame.frame["close"].iloc[-1])

    assert loaded.derive("close", last_close) == 2.0 and loaded.derive("close", last_close) == 2.0
    assert calls == ["close"]
    assert loaded.derive(("close", "again"), last_close) == 2.0 and calls == ["close", "close"]

    def failing(frame: IndicatorFrame) -> float:
        calls.append("failing")
        raise ValueError("no answer")

    for _ in range(2):
        with pytest.raises(ValueError):
            loaded.derive("failing", failing)
    assert calls.count("failing") == 2  # a failure is not remembered: the next run tries again


async def run(hub: ServiceHub, settings: Settings, symbol: str, at: datetime, **options: Any) -> dict[str, Any]:
    request = make_request(settings, symbol, as_of=at, **options)
    return await build_graph().ainvoke({"request": request}, {"recursion_limit": RECURSION_LIMIT}, context=hub.for_request(request))


def sections(state: dict[str, Any]) -> dict[str, Any]:
    return {name: jsonable(state.get(name)) for name in DERIVED_SECTIONS}


@pytest.mark.parametrize("symbol,options", [("SYN0202/USDT", {}), ("ETH/USDT", {}), ("SYN0203/USDT", {"decision_timeframe": "5m"})])
async def test_the_next_cycle_reuses_unchanged_frames_answers_and_decides_as_a_fresh_process(
    tmp_path: Path, symbol: str, options: dict[str, Any]
) -> None:
    settings = Settings(_env_file=None, home=tmp_path)
    scanning = ServiceHub(settings)
    await run(scanning, settings, symbol, CLOCK, **options)
    frames = scanning.for_request(make_request(settings, symbol, as_of=CLOCK)).frames
    hourly = await frames.get(symbol, "1h", CLOCK)
    remembered = dict(hourly._derived)
    answers = {key if isinstance(key, str) else key[0] for key in remembered}
    assert {"market_data", "data_quality", "regime", "structure", "volume", "support_resistance", "fibonacci", "anchored_vwap"} <= answers
    assert ("strategy" in answers) == (options.get("decision_timeframe", "1h") == "1h")
    # Five minutes on, only the 5m frame is new: the hourly frame and its answers are the very same objects.
    following = await run(scanning, settings, symbol, NEXT_CLOSE, **options)
    assert await frames.get(symbol, "1h", NEXT_CLOSE) is hourly
    assert all(hourly._derived[key] is answer for key, answer in remembered.items())
    assert (await frames.get(symbol, "5m", NEXT_CLOSE)) is not (await frames.get(symbol, "5m", CLOCK))
    fresh = await run(ServiceHub(settings), settings, symbol, NEXT_CLOSE, **options)
    assert sections(following) == sections(fresh)
    assert all(s.as_of == fresh["market"].as_of for s in following["signals"].values())


async def test_scenario_markets_are_drawn_at_each_clock_so_nothing_is_reused(tmp_path: Path) -> None:
    """A scenario's history depends on the clock: its frames, and so their answers, are per clock."""
    settings = Settings(_env_file=None, home=tmp_path)
    hub = ServiceHub(settings)
    first = await run(hub, settings, "BTC/USDT", CLOCK, scenario="range")
    frames = hub.for_request(make_request(settings, "BTC/USDT", as_of=CLOCK, scenario="range")).frames
    assert (await frames.get("BTC/USDT", "1d", CLOCK)) is not (await frames.get("BTC/USDT", "1d", NEXT_CLOSE))
    assert sections(first) == sections(await run(ServiceHub(settings), settings, "BTC/USDT", CLOCK, scenario="range"))
