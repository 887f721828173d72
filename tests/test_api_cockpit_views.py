"""The views the cockpit reads, over real HTTP: the desk-wide event stream, the book, the heatmap, a run's chart.

Real uvicorn on loopback, real PostgreSQL; built-in markets, paper broker, no LLM (no Ollama here).
"""

from __future__ import annotations


import pytest

from state import Settings
from tests.http_support import SseReader, serving


async def test_desk_stream_book_heatmap_and_chart_agree_with_the_runs(pg_settings: Settings) -> None:
    async with serving(pg_settings) as served:
        client = served.client
        done = (await client.post("/runs", params={"wait": "true"}, json={"symbols": ["BTC/USDT", "ETH/USDT"], "scenario": "uptrend"})).json()["runs"]
        held = (await client.post("/runs", params={"wait": "true"}, json={"symbol": "SOL/USDT", "scenario": "range"})).json()["runs"][0]
        assert [r["decision"]["action"] for r in done] == ["BUY", "BUY"] and held["decision"]["action"] == "HOLD"
        await client.post("/governor/halt", json={"reason": "lunch"})

        reader = SseReader()
        async with client.stream("GET", "/events", params={"after": 0}) as response:
            events = await reader.read(response, until={"SYS_COMMAND"})
        by_thread = {e.data["thread_id"]: e.data["symbol"] for e in events}
        assert {by_thread[r["thread_id"]] for r in done} == {"BTC/USDT", "ETH/USDT"}
        assert events[-1].data["node"] == "governor" and events[-1].data["layer"] == "L0"
        assert {e.data["layer"] for e in events if e.data["node"] == "risk"} == {"L7"}
        assert [int(e.id) for e in events] == sorted(int(e.id) for e in events)

        book = (await client.get("/portfolio")).json()
        assert book["governor"]["halted"] is True and len(book["open"]) == 2
        notionals = {p["symbol"]: p["quantity"] * p["entry_price"] for p in book["open"]}
        for symbol, notional in notionals.items():
            assert book["exposure"]["symbol"][symbol] == pytest.approx(notional / book["equity"], rel=1e-6)
        assert book["exposure"]["direction"]["buy"] == pytest.approx(sum(notionals.values()) / book["equity"], rel=1e-6)
        risk_at_stops = sum(p["quantity"] * abs(p["entry_price"] - p["stop"]) for p in book["open"])
        assert book["heat"] == pytest.approx(risk_at_stops / book["equity"], rel=1e-3) and 0 < book["heat"] <= book["heat_cap"]
        assert set(book["drawdown_limits"]) == {"daily", "weekly", "monthly"}

        heat = (await client.get("/heatmap")).json()
        rows = {row["symbol"]: row for row in heat["rows"]}
        assert set(rows) == {"BTC/USDT", "ETH/USDT", "SOL/USDT"}
        assert rows["BTC/USDT"]["consensus"] > 0 and rows["BTC/USDT"]["action"] == "BUY"
        assert max(rows["BTC/USDT"]["signals"].values()) > 0 and set(rows["BTC/USDT"]["signals"]) <= set(heat["strategies"])

        btc = next(r for r in done if r["state"]["request"]["symbol"] == "BTC/USDT")
        chart = (await client.get(f"/runs/{btc['thread_id']}/chart")).json()
        assert chart["timeframe"] == "1h" and 100 <= len(chart["candles"]) <= 150
        times = [c["time"] for c in chart["candles"]]
        assert times == sorted(times) and all(c["low"] <= min(c["open"], c["close"]) for c in chart["candles"])
        lines = {o["kind"]: o["price"] for o in chart["overlays"]}
        risk = btc["state"]["risk"]
        assert lines["entry"] == risk["entry"] and lines["stop"] == risk["stop"] and lines["target"] == risk["target"]
        assert "confluence" in lines
        assert (await client.get("/runs/nope/chart")).status_code == 404
