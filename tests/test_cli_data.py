"""`aitrader data download|import` and `aitrader run --source ccxt|files` as separate processes.

The exchange is a local HTTP endpoint serving recorded Binance responses
(tests/exchange_server.py), because no network reaches an exchange here; ccxt
itself runs unchanged in the CLI process, pointed there by AITRADER_EXCHANGE_API_URL.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.exchange_server import BinanceStub
from tests.test_ingestion import market_files

NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)


@pytest.fixture
async def exchange() -> AsyncIterator[BinanceStub]:
    async with BinanceStub(NOW) as stub:
        yield stub


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    variables = {k: v for k, v in os.environ.items() if not k.startswith("AITRADER_")}
    variables["AITRADER_HOME"] = str(tmp_path / "home")
    variables["AITRADER_LLM_ENABLED"] = "false"
    if request.param == "postgres":
        variables["AITRADER_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    return variables


async def aitrader(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    # Asynchronous, so this test's event loop keeps serving the fake exchange meanwhile.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "api.cli", *args, env=env, cwd=env["AITRADER_HOME"].rsplit("/", 1)[0],
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    return process.returncode, out.decode(), err.decode()


def counts(table: str) -> dict[tuple[str, str], int]:
    rows = [line.split() for line in table.strip().splitlines()[1:]]
    return {(symbol, tf): int(n.replace(",", "")) for symbol, tf, n in rows}


async def test_download_fetches_only_what_the_store_lacks(exchange: BinanceStub, env: dict[str, str]) -> None:
    env["AITRADER_EXCHANGE_API_URL"] = exchange.url
    args = ["data", "download", "--exchange", "binance", "--symbols", "BTC/USDT,ETH/USDT", "--timeframes", "1h,4h",
            "--since", "2026-11-01", "--until", NOW.isoformat()]
    code, out, err = await aitrader(env, *args)
    assert code == 0, err
    first = counts(out)
    # 1 Nov 00:00 to 20 Nov 12:30: 468 closed hourly candles, 117 four-hourly ones.
    assert first == {("BTC/USDT", "1h"): 468, ("ETH/USDT", "1h"): 468, ("BTC/USDT", "4h"): 117, ("ETH/USDT", "4h"): 117}
    assert "candle" in err  # the progress bar
    klines_before = len(exchange.requests_to("klines"))

    code, out, _ = await aitrader(env, *args)
    assert code == 0 and set(counts(out).values()) == {0}
    assert len(exchange.requests_to("klines")) == klines_before  # nothing missing, nothing asked

    exchange.advance(timedelta(hours=5))
    later = (NOW + timedelta(hours=5)).isoformat()
    code, out, _ = await aitrader(env, *args[:-1], later)
    assert counts(out)[("BTC/USDT", "1h")] == 5 and counts(out)[("BTC/USDT", "4h")] == 1
    asked = exchange.requests_to("klines")[klines_before:]
    newest_stored = int(datetime(2026, 11, 20, 11, tzinfo=UTC).timestamp() * 1000)
    assert asked and all(int(q["startTime"]) > newest_stored for q in asked if q["interval"] == "1h")


async def test_run_on_the_exchange_through_the_store(exchange: BinanceStub, env: dict[str, str]) -> None:
    env["AITRADER_EXCHANGE_API_URL"] = exchange.url
    code, out, err = await aitrader(
        env, "run", "BTC/USDT", "--source", "ccxt", "--exchange", "binance", "--timeframes", "1h,4h",
        "--as-of", NOW.isoformat(), "--json",
    )
    assert code == 0, err
    document = json.loads(out)
    assert document["decision"]["action"] in {"BUY", "HOLD", "REJECT"}
    assert document["state"]["market"]["source"] == "ccxt:binance"
    sanity = {c["name"]: c["passed"] for c in document["state"]["sanity"]["checks"]}
    assert sanity["market_active"] is True and sanity["market_type"] is True
    assert document["state"]["market"]["timeframes"]["1h"]["count"] == 300


async def test_import_then_run_from_the_files(env: dict[str, str], tmp_path: Path) -> None:
    market_files(tmp_path / "data")
    venue = ["--exchange", "kraken"]  # the files' venue, whatever the settings say
    code, out, err = await aitrader(env, "data", "import", str(tmp_path / "data"), *venue)
    assert code == 0, err
    assert counts(out) == {("BTC/USDT", "15m"): 1200, ("BTC/USDT", "1h"): 480}
    code, out, _ = await aitrader(env, "data", "import", str(tmp_path / "data"), *venue)
    assert set(counts(out).values()) == {0}
    code, out, err = await aitrader(env, "run", "BTC/USDT", "--data-dir", str(tmp_path / "data"), *venue, "--timeframes", "15m,1h,4h,1d", "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document["decision"]["action"] == "BUY"
    assert "1d" in document["state"]["market"]["dropped"]
    assert document["state"]["market"]["exchange"] == "kraken"
