"""The HTTP API's runs: start, stream, approve, conflicts, validation and auth, through a real uvicorn server.

Every test talks HTTP over a loopback socket to the real app (tests/http_support.py), on the
embedded SQLite file and on the real PostgreSQL server. Market data is the built-in scenario
source, so no exchange is needed; the LLM is switched off (no Ollama here).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from state import Settings
from tests.http_support import SseReader, read_events, serving


@pytest.fixture
def api_settings(backend_settings: Settings) -> Settings:
    return backend_settings.model_copy(update={"llm_enabled": False})


async def start(client: httpx.AsyncClient, **body: Any) -> str:
    response = await client.post("/runs", json={"scenario": "uptrend", **body})
    assert response.status_code == 202, response.text
    return response.json()["runs"][0]["thread_id"]


async def wait_for_status(client: httpx.AsyncClient, thread_id: str, *statuses: str, timeout: float = 60) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        run = (await client.get(f"/runs/{thread_id}")).json()
        if run["run"]["status"] in statuses and not run["driving"]:
            return run
        assert asyncio.get_running_loop().time() < deadline, f"run stayed {run['run']['status']}"
        await asyncio.sleep(0.05)


async def test_a_run_streams_to_its_interrupt_and_an_api_approval_executes_it(api_settings: Settings) -> None:
    """POST /runs returns at once; the SSE stream carries node updates, the product's events, the interrupt;
    approving through the API shows the execution and the decision on the same stream."""
    async with serving(api_settings) as served:
        client = served.client
        thread_id = await start(client, symbol="BTC/USDT", approval_mode="always")
        first = await read_events(client, thread_id, until={"interrupt"})
        ids = [int(e.id) for e in first if e.id]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        kinds = [e.event for e in first]
        assert {"MARKET_DATA", "node_update", "STRATEGY_SIGNAL", "SIGNAL", "VERIFIED_SIG"} <= set(kinds)
        assert "progress" in kinds  # the anchored-VWAP node reports from inside
        interrupt = first[-1]
        assert interrupt.event == "interrupt" and interrupt.data["payload"]["proposal"]["symbol"] == "BTC/USDT"

        approvals = (await client.get("/approvals")).json()["approvals"]
        assert [a["thread_id"] for a in approvals] == [thread_id]
        assert approvals[0]["proposal"]["quantity"] > 0 and approvals[0]["proposal"]["checks"]

        answer = await client.post(
            f"/runs/{thread_id}/resume",
            json={"action": "approve", "interrupt_id": interrupt.data["payload"]["interrupt_id"]},
            headers={"X-Operator": "alice"},
        )
        assert answer.status_code == 202, answer.text
        rest = await read_events(client, thread_id, until={"end"}, headers={"Last-Event-ID": interrupt.id})
        assert all(int(e.id) > int(interrupt.id) for e in rest if e.id)
        kinds = [e.event for e in rest]
        assert kinds.index("APPROVED_ORD") < kinds.index("ORDER_FILLED") < kinds.index("decision") < kinds.index("end")
        assert rest[-1].data["status"] == "done" and rest[-1].data["action"] == "BUY"

        run = (await client.get(f"/runs/{thread_id}")).json()
        assert run["decision"]["action"] == "BUY" and run["pending_interrupt"] is None
        assert run["state"]["approval"]["by"] == "alice" and run["state"]["approval"]["status"] == "approved"
        assert (await client.get("/approvals")).json()["approvals"] == []


async def test_reconnecting_with_last_event_id_gets_exactly_what_was_missed(api_settings: Settings) -> None:
    """A client that drops after a few events does not stop the run, and its reconnect fills the gap without repeats."""
    async with serving(api_settings) as served:
        client = served.client
        thread_id = await start(client, symbol="ETH/USDT", approval_mode="observe")
        early = await read_events(client, thread_id, until=set(), limit=5)  # then the client goes away
        assert len(early) == 5
        later = await read_events(client, thread_id, until={"end"}, headers={"Last-Event-ID": early[-1].id})
        whole = await read_events(client, thread_id, until={"end"})
        assert [e.id for e in early + later] == [e.id for e in whole]
        assert later[-1].data["status"] == "done"
        trail_rows = (await client.get(f"/runs/{thread_id}/events", params={"after": early[-1].id}, timeout=30)).text
        assert f"id: {early[-1].id}\r\n" not in trail_rows and f"id: {later[0].id}" in trail_rows


async def test_a_paused_stream_sends_heartbeats(api_settings: Settings) -> None:
    """While a run waits for approval its stream stays open and keeps the connection alive with comments."""
    settings = api_settings.model_copy(update={"sse_heartbeat_seconds": 0.2})
    async with serving(settings) as served:
        thread_id = await start(served.client, symbol="BTC/USDT", approval_mode="always")
        await wait_for_status(served.client, thread_id, "paused")
        reader = SseReader()
        async with served.client.stream("GET", f"/runs/{thread_id}/events") as response:
            await reader.read(response, until={"interrupt"})
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.read(response, until={"end"}), timeout=1.0)
        assert reader.comments >= 2 and reader.events[-1].event == "interrupt"


async def test_resume_conflicts_and_bad_answers_leave_the_run_paused(api_settings: Settings) -> None:
    async with serving(api_settings) as served:
        client = served.client
        paused = await start(client, symbol="BTC/USDT", approval_mode="always")
        done = await start(client, symbol="SOL/USDT", approval_mode="observe")
        await wait_for_status(client, paused, "paused")
        await wait_for_status(client, done, "done")

        refused = await client.post(f"/runs/{done}/resume", json={"action": "approve"})
        assert refused.status_code == 409 and "not waiting" in refused.json()["detail"]
        wrong = await client.post(f"/runs/{paused}/resume", json={"action": "approve", "interrupt_id": "not-this-one"})
        assert wrong.status_code == 409 and "not-this-one" in wrong.json()["detail"]
        for bad in ({"action": "maybe"}, {"action": "modify"}, {"action": "approve", "quantity": -1}, {"action": "approve", "surprise": 1}):
            response = await client.post(f"/runs/{paused}/resume", json=bad)
            assert response.status_code == 422, (bad, response.text)
            assert response.json()["detail"].startswith("invalid request")
        assert (await client.post("/runs/nope-123/resume", json={"action": "approve"})).status_code == 404
        assert [a["thread_id"] for a in (await client.get("/approvals")).json()["approvals"]] == [paused]

        first = await client.post(f"/runs/{paused}/resume", json={"action": "reject", "reason": "not today"})
        second = await client.post(f"/runs/{paused}/resume", json={"action": "approve"})
        assert first.status_code == 202 and second.status_code == 409  # the same interrupt cannot be answered twice
        run = await wait_for_status(client, paused, "done")
        assert run["decision"]["action"] == "REJECT" and run["state"]["approval"]["status"] == "rejected"
        again = await client.post(f"/runs/{paused}/resume", json={"action": "approve"})
        assert again.status_code == 409


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"symbol": "BTCUSDT"}, "malformed symbol"),
        ({"symbol": "BTC/USDT", "timeframes": ["7m"]}, "unknown timeframe"),
        ({"symbol": "BTC/USDT", "approval_mode": "sometimes"}, "approval_mode"),
        ({"symbol": "BTC/USDT", "source": "files"}, "data directory"),
        ({"symbol": "BTC/USDT", "source": "ccxt", "scenario": "uptrend"}, "scenario"),
        ({"symbols": ["BTC/USDT", "nonsense"]}, "malformed symbol"),
        ({"symbols": ["BTC/USDT", "btc/usdt"]}, "named twice"),
        ({"symbol": "BTC/USDT", "symbols": ["ETH/USDT"]}, "either"),
        ({}, "either"),
        ({"symbol": "BTC/USDT", "leverage": 10}, "leverage"),
        ({"symbol": "BTC/USDT", "broker": "live"}, "live trading is off"),
    ],
)
async def test_malformed_start_requests_get_a_useful_4xx_and_start_nothing(
    make_settings: Callable[..., Settings], body: dict[str, Any], message: str
) -> None:
    async with serving(make_settings(llm_enabled=False)) as served:
        response = await served.client.post("/runs", json={**body})
        assert response.status_code in (403, 422), response.text
        assert message in response.json()["detail"]
        assert (await served.client.get("/runs")).json()["runs"] == []


async def test_a_list_of_symbols_starts_one_thread_each_and_wait_returns_their_outcomes(api_settings: Settings) -> None:
    async with serving(api_settings) as served:
        client = served.client
        response = await client.post("/runs", params={"wait": "true"}, json={"symbols": ["BTC/USDT", "ETH/USDT", "SOL/USDT"], "scenario": "range"})
        assert response.status_code == 200, response.text
        outcomes = response.json()["runs"]
        assert len({o["thread_id"] for o in outcomes}) == 3
        assert all(o["decision"]["action"] in ("BUY", "SELL", "HOLD", "REJECT") for o in outcomes)
        listed = (await client.get("/runs")).json()["runs"]
        assert {r["thread_id"] for r in listed} == {o["thread_id"] for o in outcomes}
        assert all(r["status"] == "done" for r in listed)
        only_eth = (await client.get("/runs", params={"symbol": "eth/usdt"})).json()["runs"]
        assert [r["symbol"] for r in only_eth] == ["ETH/USDT"]
        named = await client.post("/runs", json={"symbol": "BTC/USDT", "thread_id": outcomes[0]["thread_id"]})
        assert named.status_code == 409


async def test_unknown_runs_and_bad_event_ids_are_json_errors(make_settings: Callable[..., Settings]) -> None:
    async with serving(make_settings(llm_enabled=False)) as served:
        client = served.client
        for path in ("/runs/nope", "/runs/nope/events", "/runs/nope/history"):
            response = await client.get(path)
            assert response.status_code == 404 and "nope" in response.json()["detail"]
        thread_id = await start(client, symbol="BTC/USDT")
        bad = await client.get(f"/runs/{thread_id}/events", headers={"Last-Event-ID": "yesterday"})
        assert bad.status_code == 422 and "Last-Event-ID" in bad.json()["detail"]
        await wait_for_status(client, thread_id, "done")


async def test_mutating_calls_need_the_bearer_token_and_reads_do_not(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(llm_enabled=False, api_token="s3cret-token")
    async with serving(settings) as served:
        anonymous = httpx.AsyncClient(base_url=served.base_url)
        wrong = httpx.AsyncClient(base_url=served.base_url, headers={"Authorization": "Bearer guess"})
        async with anonymous, wrong:
            for client in (anonymous, wrong):
                for path, body in (("/runs", {"symbol": "BTC/USDT"}), ("/governor/halt", {"reason": "x"}), ("/runs/x/resume", {"action": "approve"})):
                    response = await client.post(path, json=body)
                    assert response.status_code == 401, (path, response.text)
                    assert "Bearer" in response.json()["detail"] and response.headers["www-authenticate"] == "Bearer"
            assert (await anonymous.get("/runs")).status_code == 200
            assert (await anonymous.get("/governor")).json()["halted"] is False
        allowed = await served.client.post("/runs", json={"symbol": "BTC/USDT"}, headers={"Authorization": "Bearer s3cret-token"})
        assert allowed.status_code == 202
        await wait_for_status(served.client, allowed.json()["runs"][0]["thread_id"], "done")


async def test_without_a_token_changes_from_beyond_loopback_are_refused(make_settings: Callable[..., Settings]) -> None:
    """The ASGI transport lets the test pose as a remote client (10.1.2.3), which a loopback socket cannot."""
    from api.http.app import create_app

    app = create_app(make_settings(llm_enabled=False))
    async with app.router.lifespan_context(app):
        remote = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("10.1.2.3", 5555)), base_url="http://api")
        local = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 5555)), base_url="http://api")
        async with remote, local:
            refused = await remote.post("/governor/halt", json={"reason": "from afar"})
            assert refused.status_code == 403 and "AITRADER_API_TOKEN" in refused.json()["detail"]
            assert (await remote.get("/governor")).json()["halted"] is False
            assert (await local.post("/governor/halt", json={"reason": "from here"}, headers={"X-Operator": "bob"})).status_code == 200
            state = (await remote.get("/governor")).json()
            assert state["halted"] is True and state["changed_by"] == "bob"


async def test_runs_cut_off_by_a_shutdown_are_marked_failed_not_left_queued(api_settings: Settings) -> None:
    """One run at a time and no grace: stopping the server cancels the running run and the queued ones.
    Each says so in the runs index (the running one can be carried on from its last checkpoint)."""
    from tools.storage import open_storage

    from tools.market_data.builtin import builtin_markets

    settings = api_settings.model_copy(update={"api_max_concurrent_runs": 1, "api_shutdown_grace_seconds": 0})
    # Enough symbols that, one at a time, many still wait when the server stops (a run takes ~50-150 ms).
    symbols = [m.symbol for m in builtin_markets()[:20]]
    async with serving(settings) as served:
        response = await served.client.post("/runs", json={"symbols": symbols, "scenario": "uptrend"})
        assert response.status_code == 202
        await asyncio.sleep(0.3)  # the first is running, the others wait for the one slot
    async with open_storage(settings) as storage:
        rows = await storage.ledger.runs()
    assert len(rows) == len(symbols) and {r["status"] for r in rows} <= {"failed", "done"}
    cut = [r for r in rows if r["status"] == "failed"]
    assert any("stopped before this run started" in str(r["reason"]) for r in cut)
