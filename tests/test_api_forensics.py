"""Forensics over HTTP: checkpoint history, the state and diff at a step, replay, what-if forks, injected signals.

Real uvicorn on loopback against the real PostgreSQL server (and SQLite for the
fork guarantees); built-in scenario markets; no LLM (no Ollama here).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from state import Settings
from tests.http_support import serving
from tests.test_api_runs import start, wait_for_status


@pytest.fixture
def api_settings(backend_settings: Settings) -> Settings:
    return backend_settings.model_copy(update={"llm_enabled": False})


async def snapshot_history(client: httpx.AsyncClient, thread_id: str) -> dict[str, dict[str, Any]]:
    """Every checkpoint of a thread with the state it holds."""
    checkpoints = (await client.get(f"/runs/{thread_id}/history")).json()["checkpoints"]
    return {c["checkpoint_id"]: (await client.get(f"/runs/{thread_id}/checkpoints/{c['checkpoint_id']}")).json()["values"] for c in checkpoints}


def checkpoint_before(history: list[dict[str, Any]], node: str) -> dict[str, Any]:
    return next(c for c in history if node in c["next"])


async def test_history_lists_steps_and_a_checkpoint_shows_what_its_step_changed(pg_settings: Settings) -> None:
    async with serving(pg_settings) as served:
        client = served.client
        thread_id = await start(client, symbol="BTC/USDT", approval_mode="always")
        await wait_for_status(client, thread_id, "paused")
        history = (await client.get(f"/runs/{thread_id}/history")).json()["checkpoints"]
        steps = [c["step"] for c in history]
        assert steps == sorted(steps, reverse=True) and steps[-1] == -1
        assert history[0]["next"] == ["approval"] and history[0]["nodes"] == ["risk"]
        parallel = next(c for c in history if len(c["nodes"]) > 1)
        assert {"regime", "structure"} <= set(parallel["nodes"]) or {"fibonacci", "anchored_vwap"} <= set(parallel["nodes"])

        detail = (await client.get(f"/runs/{thread_id}/checkpoints/{history[0]['checkpoint_id']}")).json()
        assert detail["next"] == ["approval"] and detail["parent_checkpoint_id"] == history[1]["checkpoint_id"]
        changes = {c["section"]: c for c in detail["diff"]}
        assert changes["risk"]["change"] == "added" and changes["risk"]["fields"]["approved"]["after"] is True
        assert set(changes) <= {"risk", "audit"}  # risk wrote nothing else
        assert detail["values"]["risk"]["quantity"] == changes["risk"]["fields"]["quantity"]["after"]

        missing = await client.get(f"/runs/{thread_id}/checkpoints/1f000000-0000-6000-8000-000000000000")
        assert missing.status_code == 404 and "no checkpoint" in missing.json()["detail"]


async def test_replay_and_forks_leave_the_original_thread_intact(api_settings: Settings) -> None:
    """A replay adds a branch to its own thread; forks run in new threads on a scratch book.
    Every checkpoint the original had keeps its exact state, and its book gets no order from them."""
    async with serving(api_settings) as served:
        client = served.client
        original = await start(client, symbol="BTC/USDT", approval_mode="always")
        await wait_for_status(client, original, "paused")
        before = await snapshot_history(client, original)
        history = (await client.get(f"/runs/{original}/history")).json()["checkpoints"]
        at_approval = history[0]["checkpoint_id"]

        rejected = await client.post(
            f"/runs/{original}/replay", params={"wait": "true"},
            json={"checkpoint_id": at_approval, "fork": True, "approval": {"action": "reject", "by": "what-if", "reason": "test"}},
        )
        assert rejected.status_code == 200, rejected.text
        rejected_run = rejected.json()["runs"][0]
        assert rejected_run["thread_id"] != original and rejected_run["decision"]["action"] == "REJECT"

        observed = await client.post(
            f"/runs/{original}/replay", params={"wait": "true"},
            json={"checkpoint_id": checkpoint_before(history, "risk")["checkpoint_id"], "fork": True,
                  "request": {"approval_mode": "observe"}, "settings": {"risk_per_trade": 0.002}},
        )
        assert observed.status_code == 200, observed.text
        observed_run = observed.json()["runs"][0]
        assert observed_run["decision"]["action"] == "BUY" and observed_run["pending_interrupt"] is None
        proposed = before[at_approval]["risk"]["quantity"]
        # The what-if risks 0.2 % of equity (the original's size may have been cut by a cap instead).
        assert observed_run["state"]["risk"]["risk_fraction"] == pytest.approx(0.002)
        assert observed_run["state"]["risk"]["quantity"] < proposed

        fork_index = (await client.get(f"/runs/{observed_run['thread_id']}")).json()["run"]
        assert fork_index["parent_thread_id"] == original

        replayed = await client.post(f"/runs/{original}/replay", params={"wait": "true"}, json={"checkpoint_id": checkpoint_before(history, "verify")["checkpoint_id"]})
        assert replayed.status_code == 200 and replayed.json()["runs"][0]["pending_interrupt"] is not None

        after = await snapshot_history(client, original)
        assert set(before) < set(after)  # the replay's branch was added ...
        assert {k: after[k] for k in before} == before  # ... and nothing that was there changed
        book = served.server.storage.ledger
        assert await book.positions() == []  # forks and replays traded on scratch books only
        assert (await client.get(f"/runs/{original}")).json()["pending_interrupt"] is not None


async def test_fork_requests_that_would_change_the_run_itself_are_refused(pg_settings: Settings) -> None:
    async with serving(pg_settings) as served:
        client = served.client
        thread_id = await start(client, symbol="BTC/USDT")
        await wait_for_status(client, thread_id, "done")
        first = (await client.get(f"/runs/{thread_id}/history")).json()["checkpoints"][-1]["checkpoint_id"]
        cases = [
            ({"checkpoint_id": first, "fork": True, "settings": {"database_url": "postgresql://elsewhere"}}, "cannot change database_url"),
            ({"checkpoint_id": first, "fork": True, "settings": {"live_trading": True}}, "cannot change live_trading"),
            ({"checkpoint_id": first, "fork": True, "settings": {"risk_per_trade": 0.5}}, "risk_per_trade"),
            ({"checkpoint_id": first, "fork": True, "request": {"symbol": "ETH/USDT"}}, "cannot change the request's symbol"),
            ({"checkpoint_id": first, "settings": {"risk_per_trade": 0.01}}, "fork: true"),
        ]
        for body, message in cases:
            response = await client.post(f"/runs/{thread_id}/replay", json=body)
            assert response.status_code == 422 and message in response.json()["detail"], (body, response.text)
        missing = await client.post(f"/runs/{thread_id}/replay", json={"checkpoint_id": "nope", "fork": True})
        assert missing.status_code == 404
        assert len((await client.get("/runs")).json()["runs"]) == 1  # nothing was started by a refused call


async def test_an_injected_signal_forks_the_run_before_its_strategies(pg_settings: Settings) -> None:
    async with serving(pg_settings) as served:
        client = served.client
        thread_id = await start(client, symbol="ETH/USDT", scenario="range")
        original = await wait_for_status(client, thread_id, "done")
        response = await client.post(
            f"/runs/{thread_id}/signals", params={"wait": "true"},
            json={"direction": "LONG", "confidence": 0.9, "rationale": "reclaimed the weekly open"}, headers={"X-Operator": "carol"},
        )
        assert response.status_code == 200, response.text
        fork = response.json()["runs"][0]
        injected = {k: v for k, v in fork["state"]["signals"].items() if k.startswith("operator:")}
        assert list(injected) == ["operator:carol:0"] and injected["operator:carol:0"]["direction"] == "LONG"
        assert not any(k.startswith("operator:") for k in original["state"]["signals"])
        assert fork["state"]["market"] == original["state"]["market"]  # the same moment, the same candles
        bad = await client.post(f"/runs/{thread_id}/signals", json={"direction": "UP", "confidence": 2, "rationale": "x"})
        assert bad.status_code == 422 and "direction" in bad.json()["detail"] and "confidence" in bad.json()["detail"]


async def test_signals_on_a_run_that_stopped_before_its_strategies_are_refused(pg_settings: Settings) -> None:
    async with serving(pg_settings) as served:
        client = served.client
        # A leveraged token fails the sanity gate, so the strategies never ran.
        thread_id = await start(client, symbol="BTCUP/USDT", scenario=None)
        run = await wait_for_status(client, thread_id, "done")
        assert run["decision"]["stage"] == "sanity"
        response = await client.post(f"/runs/{thread_id}/signals", json={"direction": "LONG", "confidence": 0.9, "rationale": "anyway"})
        assert response.status_code == 409 and "before its strategies" in response.json()["detail"]
