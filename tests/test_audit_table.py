"""The append-only, hash-chained audit table, on the real SQLite file and the real PostgreSQL server.

Runs write their node events and state changes into it under their checkpoint
ids; the database refuses UPDATE and DELETE; a superuser who switches the
guard off and edits a row is caught by `verify`.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import psycopg
import pytest

from api.runs import Lifecycles, make_request
from state import Settings
from tools.audit_log import AuditRecord
from tools.storage import open_storage

CLOCK = datetime(2026, 11, 20, 13, 37, tzinfo=UTC)


def record(thread: str, n: int) -> AuditRecord:
    return AuditRecord(thread_id=thread, node="test", event="ANALYSIS_UPDATE", verdict=f"V{n}", payload={"n": n, "text": "ü"})


async def test_a_run_leaves_its_trail_under_its_checkpoints(backend_settings: Settings) -> None:
    async with open_storage(backend_settings) as storage:
        runs = Lifecycles(backend_settings, storage)
        outcome = await runs.start(make_request(backend_settings, "BTC/USDT", scenario="uptrend", as_of=CLOCK))
        trail = await storage.audit.trail(outcome.thread_id)
        history = {h.checkpoint_id for h in await runs.history(outcome.thread_id)}
        report = await storage.audit.verify()
    nodes = [row.node for row in trail]
    assert nodes[0] == "sanity" and nodes[-1] == "audit"
    assert {"risk", "approval", "execute", "strategy"} <= set(nodes)
    filled = [row for row in trail if row.event == "ORDER_FILLED"]
    assert len(filled) == 1 and filled[0].node == "execute"
    # Every row names a checkpoint of this very thread, and the sections each node changed are kept.
    assert {row.checkpoint_id for row in trail} <= history
    assert any(row.node == "execute" and row.event == "STATE_CHANGE" and row.verdict == "decision,orders" for row in trail)
    assert report.intact and report.rows == len(trail)
    # The longest analyst reports its progress through LangGraph's custom stream, one row per timeframe.
    progress = [row for row in trail if row.event == "PROGRESS"]
    assert [row.node for row in progress] == ["anchored_vwap"] * len(backend_settings.timeframes)
    assert '"done":6' in progress[-1].payload and '"total":6' in progress[-1].payload


async def test_a_runs_outcome_from_its_stream_is_the_state_it_saved(backend_settings: Settings) -> None:
    """The drive takes the outcome from the stream, not from reading the state back: the two must agree."""
    async with open_storage(backend_settings) as storage:
        runs = Lifecycles(backend_settings, storage)
        for approval in ("always", "observe"):
            streamed = await runs.start(make_request(backend_settings, "BTC/USDT", scenario="uptrend", approval_mode=approval, as_of=CLOCK), durability="exit")
            saved = await runs.outcome(streamed.thread_id)
            assert streamed.values == saved.values and streamed.decision == saved.decision
            assert streamed.pending == saved.pending and (streamed.pending is not None) == (approval == "always")
            snapshot = await runs.graph.aget_state({"configurable": {"thread_id": streamed.thread_id}})
            newest = snapshot.config["configurable"]["checkpoint_id"]
            assert await storage.last_checkpoint_id(streamed.thread_id) == newest
            assert {row.checkpoint_id for row in await storage.audit.trail(streamed.thread_id)} == {newest}
        assert await storage.last_checkpoint_id("no-such-thread") is None
        # A replay from a finished run's last checkpoint has nothing left to run: its outcome is the same.
        replayed = await runs.replay(streamed.thread_id, newest)
        assert replayed.decision == streamed.decision and replayed.values == streamed.values


@pytest.mark.postgres
async def test_a_runs_closing_events_and_its_status_commit_together(pg_settings: Settings) -> None:
    """A run that writes its rows at its end (exit durability: a scan's screen) ends with one commit: its
    rows and its run row's final status (PostgreSQL's xmin names the transaction)."""
    async with open_storage(pg_settings) as storage:
        runs = Lifecycles(pg_settings, storage)
        for symbol, approval, status in (("BTC/USDT", "observe", "done"), ("ETH/USDT", "always", "paused")):
            outcome = await runs.start(make_request(pg_settings, symbol, scenario="uptrend", approval_mode=approval, as_of=CLOCK), durability="exit")
            assert (await storage.ledger.run(outcome.thread_id))["status"] == status
            async with await psycopg.AsyncConnection.connect(pg_settings.database_url) as conn:
                run_tx = await (await conn.execute("SELECT xmin::text FROM aitrader_runs WHERE thread_id = %s", (outcome.thread_id,))).fetchone()
                last = await (
                    await conn.execute("SELECT xmin::text, node FROM aitrader_audit WHERE thread_id = %s ORDER BY seq DESC LIMIT 1", (outcome.thread_id,))
                ).fetchone()
            assert last[1] == ("audit" if status == "done" else "approval")
            assert run_tx[0] == last[0]


@pytest.mark.postgres
async def test_large_checkpoint_blobs_and_payloads_are_compressed_with_lz4(pg_settings: Settings) -> None:
    """The storage's connections compress what they write with lz4 (pglz costs the server ~2 ms more a decision);
    reading it back is unchanged."""
    async with open_storage(pg_settings) as storage:
        runs = Lifecycles(pg_settings, storage)
        outcome = await runs.start(make_request(pg_settings, "SOL/USDT", as_of=CLOCK), durability="exit")
        assert (await runs.outcome(outcome.thread_id)).values == outcome.values
    async with await psycopg.AsyncConnection.connect(pg_settings.database_url) as conn:
        blobs = await (
            await conn.execute("SELECT pg_column_compression(blob) FROM checkpoint_blobs WHERE thread_id = %s AND length(blob) > 4096", (outcome.thread_id,))
        ).fetchall()
        payloads = await (
            await conn.execute("SELECT pg_column_compression(payload) FROM aitrader_audit WHERE thread_id = %s AND length(payload) > 4096", (outcome.thread_id,))
        ).fetchall()
    assert blobs and payloads
    assert {row[0] for row in blobs} == {"lz4"} and {row[0] for row in payloads} == {"lz4"}


async def test_interrupt_and_operator_answer_are_on_the_trail(backend_settings: Settings) -> None:
    from state.sections import ApprovalResponse

    async with open_storage(backend_settings) as storage:
        runs = Lifecycles(backend_settings, storage)
        paused = await runs.start(make_request(backend_settings, "BTC/USDT", scenario="uptrend", approval_mode="always", as_of=CLOCK))
        await runs.resume(paused.thread_id, ApprovalResponse(action="reject", by="carol", reason="too big"))
        trail = await storage.audit.trail(paused.thread_id)
    pending = [r for r in trail if r.event == "INTERRUPT"]
    assert len(pending) == 1 and '"interrupt_id"' in pending[0].payload
    answered = [r for r in trail if r.node == "approval" and r.event == "APPROVED_ORD"]
    assert answered and "carol" in answered[-1].payload


async def test_update_and_delete_are_refused_by_the_database(backend_settings: Settings) -> None:
    async with open_storage(backend_settings) as storage:
        await storage.audit.append([record("t", 1), record("t", 2)])
        for statement in ("UPDATE aitrader_audit SET verdict = 'X' WHERE seq = 1", "DELETE FROM aitrader_audit WHERE seq = 2"):
            with pytest.raises(Exception, match="append-only"):
                await storage.audit.db.execute(statement)
        assert [r.verdict for r in await storage.audit.trail("t")] == ["V1", "V2"]
        assert (await storage.audit.verify()).intact


def _tamper(settings: Settings, statements: list[str]) -> None:
    """What an attacker with full database rights does: switch the guard off and edit underneath."""
    if settings.database_url:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute("SET session_replication_role = replica")  # superuser only: triggers do not fire
            for statement in statements:
                conn.execute(statement)
    else:
        with sqlite3.connect(settings.sqlite_path) as conn:
            conn.execute("DROP TRIGGER aitrader_audit_no_update")
            conn.execute("DROP TRIGGER aitrader_audit_no_delete")
            for statement in statements:
                conn.execute(statement)


@pytest.mark.parametrize(
    ("statements", "broken_at", "problem"),
    [
        (["UPDATE aitrader_audit SET verdict = 'FORGED' WHERE seq = 3"], 3, "contents"),
        (["DELETE FROM aitrader_audit WHERE seq = 2"], 3, "missing"),
        # Rewriting a row together with its own hash still breaks the next row's link.
        (["UPDATE aitrader_audit SET payload = '{}', hash = 'f' || substr(hash, 2) WHERE seq = 2"], 2, "contents"),
    ],
)
async def test_tampering_is_found_by_verify(backend_settings: Settings, statements: list[str], broken_at: int, problem: str) -> None:
    async with open_storage(backend_settings) as storage:
        await storage.audit.append([record("t", n) for n in range(1, 6)])
        assert (await storage.audit.verify()).intact
    _tamper(backend_settings, statements)
    async with open_storage(backend_settings) as storage:
        report = await storage.audit.verify()
    assert not report.intact
    assert report.broken_at == broken_at and problem in report.problem


async def test_relinked_forgery_breaks_at_the_following_row(backend_settings: Settings) -> None:
    """A forger who recomputes a row's hash correctly still cannot fix the next row's previous-hash."""
    from tools.audit_log import row_hash

    async with open_storage(backend_settings) as storage:
        await storage.audit.append([record("t", n) for n in range(1, 4)])
        row = (await storage.audit.trail("t"))[1]
    forged = row.model_copy(update={"verdict": "FORGED"})
    columns = tuple(getattr(forged, f) for f in ("thread_id", "checkpoint_id", "node", "event", "verdict", "as_of", "recorded_at", "payload"))
    new_hash = row_hash(forged.seq, columns, forged.prev_hash)
    _tamper(backend_settings, [f"UPDATE aitrader_audit SET verdict = 'FORGED', hash = '{new_hash}' WHERE seq = 2"])
    async with open_storage(backend_settings) as storage:
        report = await storage.audit.verify()
    assert report.broken_at == 3 and "previous-hash" in report.problem


def test_payloads_are_canonical_json_a_browser_can_parse() -> None:
    import json
    import math

    from tools.audit_log import payload_text

    text = payload_text({"b": math.nan, "a": [1.5, math.inf], 3: "three", "when": datetime(2026, 1, 2, tzinfo=UTC)})
    assert text == '{"3":"three","a":[1.5,null],"b":null,"when":"2026-01-02T00:00:00+00:00"}'
    assert json.loads(payload_text({"big": 2**70})) == {"big": 2**70}  # beyond orjson's 64 bits
