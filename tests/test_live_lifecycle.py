"""A live run through the whole graph, and where its exchange keys never go.

No exchange is reachable here, so ccxt (market data and the live broker) runs
against the local Binance stub (tests/exchange_server.py: Binance's documented
wire format, recorded responses). Everything else is real: graph, savers and
ledger on SQLite and PostgreSQL. Two injected operator signals (with figures in
their rationale, so verification passes) make the consensus actionable on the
stub's market.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import psycopg
import pytest
from pydantic import SecretStr

from api.runs import Lifecycles, make_request
from state import Settings
from state.sections import OperatorSignal
from tests.exchange_server import BinanceStub
from tools.storage import open_storage

NOW = datetime(2024, 6, 1, 12, 30, tzinfo=UTC)
KEY = "LiveKeyThatMustNeverLeak0123456789"
SECRET = "LiveSecretThatMustNeverLeak9876543"
SIGNALS = [OperatorSignal(direction="LONG", confidence=0.9, rationale="close 68000 broke the 67500 range high, RSI 61", by=who) for who in ("ann", "bob")]


@pytest.fixture
async def stub() -> AsyncIterator[BinanceStub]:
    async with BinanceStub(NOW) as server:
        yield server


def live_settings(settings: Settings, stub: BinanceStub) -> Settings:
    return settings.model_copy(
        update={"live_trading": True, "exchange_api_url": stub.url, "llm_enabled": False}
        | {"exchange_api_key": SecretStr(KEY), "exchange_secret": SecretStr(SECRET)}
    )


def _stored_text(settings: Settings) -> str:
    """Every byte the run left in the database: checkpoints, writes, store, audit, ledger."""
    if settings.database_url:
        with psycopg.connect(settings.database_url) as conn:
            tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
            return "\n".join(str(row) for table in tables for row in conn.execute(f'SELECT * FROM "{table}"'))
    return settings.sqlite_path.read_bytes().decode("latin-1")


def _order_posts(stub: BinanceStub) -> int:
    return sum(1 for r in stub.requests if r.method == "POST" and "order" in r.path.lower())


async def test_a_live_run_trades_at_the_exchange_and_its_keys_go_nowhere_else(
    backend_settings: Settings, stub: BinanceStub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = live_settings(backend_settings, stub)
    async with open_storage(settings) as storage:
        runs = Lifecycles(settings, storage)
        try:
            outcome = await runs.start(make_request(settings, "BTC/USDT", source="ccxt", broker="live", operator_signals=SIGNALS, as_of=NOW))
            posts = _order_posts(stub)
            history = await runs.history(outcome.thread_id)
            # A replay re-decides on paper against a scratch book: nothing reaches the exchange.
            replayed = await runs.replay(outcome.thread_id, history[-1].checkpoint_id)
            book = await storage.ledger.positions()
        finally:
            await runs.hub.aclose()
    assert outcome.decision.action == "BUY", outcome.decision.reason
    position = outcome.values["orders"].position
    assert position.broker == "binance-live" and position.status == "open"
    assert {o.role: o.status for o in position.orders} == {"entry": "filled", "stop_loss": "open", "take_profit": "open"}
    assert stub.order(position.orders[0].client_order_id)["status"] == "FILLED"
    assert posts == 2  # the market entry, then one OCO list for stop and target
    assert replayed.decision.action == "BUY" and replayed.values["orders"].broker == "paper"
    assert _order_posts(stub) == posts
    assert [p.bracket_id for p in book] == [position.bracket_id]  # the replay's paper order stayed in its scratch book

    document = json.dumps(outcome.document(), default=str) + json.dumps(replayed.document(), default=str)
    stored = _stored_text(settings)
    logged = caplog.text
    for secret in (KEY, SECRET):
        assert secret not in document and secret not in stored and secret not in logged
        assert secret not in repr(settings) and secret not in repr(runs.hub.brokers())
    # The key did travel, in the one place it must: the API-key header of the signed requests.
    assert any(dict(r.headers).get("X-MBX-APIKEY") == KEY for r in stub.requests)


async def test_a_live_run_without_the_flag_is_refused_before_anything_runs(backend_settings: Settings, stub: BinanceStub) -> None:
    settings = live_settings(backend_settings, stub).model_copy(update={"live_trading": False})
    async with open_storage(settings) as storage:
        runs = Lifecycles(settings, storage)
        with pytest.raises(ValueError, match="AITRADER_LIVE_TRADING"):
            await runs.start(make_request(settings, "BTC/USDT", source="ccxt", broker="live", operator_signals=SIGNALS, as_of=NOW))
    assert stub.requests == []


async def test_keys_can_come_from_a_secrets_file(backend_settings: Settings, stub: BinanceStub, tmp_path) -> None:
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"apiKey": KEY, "secret": SECRET}))
    settings = live_settings(backend_settings, stub).model_copy(update={"exchange_api_key": None, "exchange_secret": None, "secrets_file": secrets})
    async with open_storage(settings) as storage:
        runs = Lifecycles(settings, storage)
        try:
            outcome = await runs.start(make_request(settings, "BTC/USDT", source="ccxt", broker="live", operator_signals=SIGNALS, as_of=NOW))
        finally:
            await runs.hub.aclose()
    assert outcome.decision.action == "BUY" and outcome.values["orders"].broker == "binance-live"
    assert KEY not in _stored_text(settings)
    if not settings.database_url:
        with sqlite3.connect(settings.sqlite_path) as conn:  # the audit trail names the live broker, not its keys
            assert conn.execute("SELECT count(*) FROM aitrader_audit WHERE payload LIKE '%binance-live%'").fetchone()[0] >= 1
