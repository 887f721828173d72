"""Operations over HTTP: governor halt/resume, the graph, health, metrics, notifications, approval expiry, `aitrader serve`.

Real uvicorn on loopback, real PostgreSQL. The webhook receiver is a local HTTP server
(tests/webhook_receiver.py) because no internet is reachable here; built-in markets, no LLM.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from api.serve_cli import bind_address
from state import Settings
from tests.http_support import serving
from tests.test_api_runs import start, wait_for_status
from tests.webhook_receiver import Receiver


async def test_a_halt_from_the_api_stops_new_orders_until_resumed(pg_settings: Settings) -> None:
    async with serving(pg_settings) as served:
        client = served.client
        halted = await client.post("/governor/halt", json={"reason": "exchange incident"}, headers={"X-Operator": "dana"})
        assert halted.status_code == 200 and halted.json()["state"]["halted"] is True
        assert (await client.get("/governor")).json().items() >= {"halted": True, "reason": "exchange incident", "changed_by": "dana"}.items()
        thread_id = await start(client, symbol="BTC/USDT")
        run = await wait_for_status(client, thread_id, "done")
        assert run["decision"]["action"] == "REJECT" and "halt" in run["decision"]["reason"].lower()

        resumed = await client.post("/governor/resume", json={"reason": "incident over"})
        assert resumed.status_code == 200 and resumed.json()["halted"] is False
        again = await wait_for_status(client, await start(client, symbol="BTC/USDT"), "done")
        assert again["decision"]["action"] == "BUY"
        commands = [r for r in await served.server.storage.audit.trail("governor")]
        assert [(r.verdict, json.loads(r.payload)["by"]) for r in commands] == [("HALT", "dana"), ("RESUME", "local-api")]
        assert (await client.post("/governor/halt", json={"reason": ""})).status_code == 422


async def test_the_graph_endpoint_draws_the_lifecycle(pg_settings: Settings) -> None:
    async with serving(pg_settings) as served:
        shape = (await served.client.get("/graph")).json()
        names = {n["id"] for n in shape["nodes"]}
        assert {"sanity", "market_data", "risk", "approval", "execute", "audit"} <= names
        edges = {(e["source"], e["target"]) for e in shape["edges"]}
        assert ("approval", "execute") in edges or any(s == "approval" and t == "execute" for s, t in edges)
        mermaid = (await served.client.get("/graph", params={"format": "mermaid"})).text
        assert "approval" in mermaid and "-->" in mermaid
        assert (await served.client.get("/graph", params={"format": "png"})).status_code == 422


async def test_health_reports_the_database_and_fails_when_it_is_gone(pg_settings: Settings, postgres_url: str) -> None:
    import psycopg

    async with serving(pg_settings) as served:
        healthy = await served.client.get("/health")
        assert healthy.status_code == 200 and healthy.json().items() >= {"status": "ok", "database": "postgres"}.items()
        database = postgres_url.rsplit("/", 1)[1]
        with psycopg.connect(postgres_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
            admin.execute(f"ALTER DATABASE \"{database}\" WITH ALLOW_CONNECTIONS false")
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (database,))
        try:
            broken = await served.client.get("/health")
            assert broken.status_code == 503 and broken.json()["status"] == "degraded" and broken.json()["error"]
        finally:
            with psycopg.connect(postgres_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
                admin.execute(f"ALTER DATABASE \"{database}\" WITH ALLOW_CONNECTIONS true")


def metric(text: str, name: str, **labels: str) -> float:
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name + (f"{{{selector}}}" if selector else "")) + r" ([0-9.e+-]+)"
    found = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    assert found, f"{name} {labels} not in metrics"
    return float(found.group(1))


async def test_metrics_count_runs_nodes_approvals_and_orders(pg_settings: Settings) -> None:
    async with serving(pg_settings) as served:
        client = served.client
        paused = await start(client, symbol="BTC/USDT", approval_mode="always")
        await wait_for_status(client, paused, "paused")
        text = (await client.get("/metrics")).text
        assert metric(text, "aitrader_runs_started_total") == 1
        assert metric(text, "aitrader_runs_finished_total", outcome="paused") == 1
        assert metric(text, "aitrader_pending_approvals") == 1
        assert metric(text, "aitrader_node_seconds_count", node="risk") == 1
        assert metric(text, "aitrader_node_seconds_count", node="strategy") >= 5  # one task per strategy of the pool

        await client.post(f"/runs/{paused}/resume", json={"action": "approve"})
        await wait_for_status(client, paused, "done")
        text = (await client.get("/metrics")).text
        assert metric(text, "aitrader_runs_finished_total", outcome="BUY") == 1
        assert metric(text, "aitrader_pending_approvals") == 0
        assert metric(text, "aitrader_open_positions") == 1
        assert metric(text, "aitrader_orders_total", event="ORDER_FILLED", verdict="BUY") == 1
        assert metric(text, "aitrader_sse_clients") == 0


async def test_the_webhook_hears_of_approvals_fills_and_halts(pg_settings: Settings, receiver: Receiver) -> None:
    settings = pg_settings.model_copy(update={"notify_webhook_url": receiver.url + "/hook"})
    async with serving(settings) as served:
        client = served.client
        thread_id = await start(client, symbol="BTC/USDT", approval_mode="always")
        await wait_for_status(client, thread_id, "paused")
        await client.post(f"/runs/{thread_id}/resume", json={"action": "approve"})
        await wait_for_status(client, thread_id, "done")
        await client.post("/governor/halt", json={"reason": "enough for today"})
        for _ in range(200):
            if len(receiver.bodies) >= 3:
                break
            await asyncio.sleep(0.02)
    kinds = [body["kind"] for body in receiver.bodies]
    assert kinds == ["approval_pending", "order_filled", "governor_halted"]
    assert receiver.bodies[0]["thread_id"] == thread_id and "BTC/USDT" in receiver.bodies[0]["text"]


async def test_a_failing_webhook_never_holds_a_run_up(pg_settings: Settings, receiver: Receiver) -> None:
    """The receiver answers 503 to everything: deliveries fail after their retries, the run finishes regardless."""
    receiver.status = 503
    settings = pg_settings.model_copy(update={"notify_webhook_url": receiver.url + "/hook", "notify_attempts": 2})
    async with serving(settings) as served:
        thread_id = await start(served.client, symbol="BTC/USDT", approval_mode="always")
        run = await wait_for_status(served.client, thread_id, "paused")
        assert run["pending_interrupt"] is not None
    assert receiver.hits and receiver.bodies == []


async def test_unanswered_approvals_expire_on_the_server(pg_settings: Settings) -> None:
    settings = pg_settings.model_copy(update={"approval_ttl_seconds": 0.5, "approval_sweep_seconds": 0.2})
    async with serving(settings) as served:
        thread_id = await start(served.client, symbol="BTC/USDT", approval_mode="always")
        run = await wait_for_status(served.client, thread_id, "done", timeout=30)
        assert run["state"]["approval"]["status"] == "expired" and run["state"]["approval"]["by"] == "expiry"
        assert run["decision"]["action"] == "REJECT"
        assert (await served.client.get("/approvals")).json()["approvals"] == []


def test_without_a_token_serve_binds_loopback_and_says_so(make_settings: Any) -> None:
    host, warning = bind_address(make_settings(), "0.0.0.0")
    assert host == "127.0.0.1" and warning and "AITRADER_API_TOKEN" in warning
    assert bind_address(make_settings(api_token="t"), "0.0.0.0") == ("0.0.0.0", None)
    assert bind_address(make_settings(), None) == ("127.0.0.1", None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_aitrader_serve_answers_on_loopback(tmp_path: Path) -> None:
    """The real command in its own process: it refuses 0.0.0.0 without a token, binds loopback and serves."""
    port = free_port()
    env = {**os.environ, "AITRADER_HOME": str(tmp_path), "AITRADER_LLM_ENABLED": "false"}
    env.pop("AITRADER_API_TOKEN", None)
    env.pop("AITRADER_DATABASE_URL", None)
    command = [str(Path(sys.executable).with_name("aitrader")), "serve", "--host", "0.0.0.0", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "aitrader serve did not answer"
                time.sleep(0.2)
        assert health.json()["status"] == "ok" and health.json()["database"] == "sqlite"
        started = httpx.post(f"http://127.0.0.1:{port}/runs", json={"symbol": "BTC/USDT", "scenario": "range"}, timeout=10)
        assert started.status_code == 202
    finally:
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert "binding 127.0.0.1 instead of 0.0.0.0" in stderr
    assert process.returncode == 0
