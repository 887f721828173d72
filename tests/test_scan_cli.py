"""`aitrader scan` as a user runs it (a real process), its schedule, its worker processes, and the API's list path.

Built-in market data and the real savers; the one stand-in is a counting
wrapper around the built-in source, to see which candles a second cycle fetches.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api.runs import Lifecycles, make_request
from api.scan import Scans
from api.scan_cli import next_close, read_watchlist
from api.scan_pool import ProcessPoolDispatcher
from state import Settings
from state.scan import ScanRequest
from tests.http_support import serving
from tests.test_cli import AITRADER, tmp_cwd
from tools.governor import Governor
from tools.storage import open_storage

CLOCK = datetime(2026, 11, 20, 13, 37, tzinfo=UTC)


def scan(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AITRADER, "scan", *args], env=env, cwd=tmp_cwd(env), capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def sqlite_env(tmp_path: Path) -> dict[str, str]:
    """An `aitrader` process on the embedded SQLite file (the Postgres path of a scan is covered in-process below)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITRADER_")}
    env["AITRADER_HOME"] = str(tmp_path / "home")
    return env


def test_scan_a_watchlist_file_prints_json_results_and_shows_progress(cli_env: dict[str, str], tmp_path: Path) -> None:
    watchlist = tmp_path / "watchlist.txt"
    watchlist.write_text("# majors\nBTC/USDT, ETH/USDT\nSOL/USDT  # and one more\n\nbad-symbol\n")
    done = scan(cli_env, "--watchlist", str(watchlist), "--as-of", "2026-11-20T13:37", "--workers", "2", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    results = {r["symbol"]: r for r in document["results"]}
    assert set(results) == {"BTC/USDT", "ETH/USDT", "SOL/USDT", "bad-symbol"}
    assert results["bad-symbol"]["status"] == "invalid"
    for symbol in ("BTC/USDT", "ETH/USDT", "SOL/USDT"):
        entry = results[symbol]
        assert entry["decision"] in ("BUY", "SELL", "HOLD", "REJECT") and entry["consensus"] in ("LONG", "SHORT", "FLAT")
        assert entry["thread_id"].startswith(document["scan_id"])
    assert len({r["worker"] for r in document["results"] if r["worker"]}) == 2  # both worker processes decided some
    assert "3/3" in done.stderr  # the progress bar reached the end of the watchlist
    # Each symbol's thread is an ordinary run: the CLI shows its history.
    history = subprocess.run([*AITRADER, "history", results["BTC/USDT"]["thread_id"], "--json"], env=cli_env, cwd=tmp_cwd(cli_env), capture_output=True, text=True, timeout=60)
    assert history.returncode == 0 and json.loads(history.stdout)


def test_scan_top_n_prints_a_ranked_table(sqlite_env: dict[str, str]) -> None:
    done = scan(sqlite_env, "--top", "3", "--scenario", "uptrend", "--as-of", "2026-11-20T13:37", "--workers", "1", "--quiet")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "decided 3" in lines[0]
    rows = [line for line in lines if line[:3].strip().isdigit()]
    assert len(rows) == 3 and all("BUY" in row or "REJECT" in row for row in rows)
    assert "*" in rows[0][:5]  # actionable consensus is marked


def test_scan_refuses_bad_arguments_clearly(sqlite_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The command's own entry point, in this process (one real process below shows the exit code end to end)."""
    from api.cli import main

    monkeypatch.setenv("AITRADER_HOME", sqlite_env["AITRADER_HOME"])
    for args, message in (
        ((), "nothing to scan"),
        (("BTC/USDT", "--top", "3"), "not both"),
        (("--watchlist", str(tmp_path / "missing.txt")), "cannot read watchlist"),
        (("BTC/USDT", "--every", "7m"), "not a timeframe"),
        (("BTC/USDT", "--cycles", "2"), "--cycles needs --every"),
    ):
        assert main(["scan", *args, "--workers", "1"]) == 2, args
        assert message in capsys.readouterr().err, args
    done = scan(sqlite_env, "--workers", "1")
    assert done.returncode == 2 and "nothing to scan" in done.stderr


async def test_every_cycle_decides_at_the_next_close_and_fetches_only_what_closed_since(make_settings) -> None:
    """Two 5-minute cycles in one process: the second fetches the 5m candles again and nothing else."""
    settings = make_settings()
    async with open_storage(settings) as storage:
        runs = Lifecycles(settings, storage)
        source = runs.hub.market_source(make_request(settings, "BTC/USDT"))
        fetched: list[tuple[str, str]] = []
        original = source.fetch_candles

        async def counting(symbol: str, timeframe: str, **kwargs):
            fetched.append((symbol, timeframe))
            return await original(symbol, timeframe, **kwargs)

        source.fetch_candles = counting  # type: ignore[method-assign]
        scans = Scans(runs)
        first_close = datetime(2026, 11, 20, 13, 35, tzinfo=UTC)
        summaries = []
        for cycle, as_of in enumerate((first_close, next_close(first_close, "5m"))):
            before = len(fetched)
            request = ScanRequest(scan_id=f"every-{cycle}", symbols=["BTC/USDT", "ETH/USDT"], as_of=as_of)
            summaries.append(await scans.run(request))
            fetched_now = fetched[before:]
            if cycle == 0:
                assert len(fetched_now) == 2 * len(settings.timeframes)
            else:
                assert sorted(fetched_now) == [("BTC/USDT", "5m"), ("ETH/USDT", "5m")]
        assert [s.as_of for s in summaries] == [first_close, first_close + timedelta(minutes=5)]
        assert all(e.status == "decided" for s in summaries for e in s.ranked)



def test_every_runs_the_given_number_of_cycles_from_the_cli(sqlite_env: dict[str, str]) -> None:
    done = scan(sqlite_env, "BTC/USDT", "--as-of", "2026-11-20T13:35", "--every", "5m", "--cycles", "2", "--workers", "1", "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    documents = [json.loads(chunk) for chunk in done.stdout.replace("}\n{", "}\n\x00{").split("\x00")]
    assert [d["as_of"] for d in documents] == ["2026-11-20T13:35:00+00:00", "2026-11-20T13:40:00+00:00"]
    assert documents[0]["scan_id"] != documents[1]["scan_id"]


def test_watchlist_files_accept_lines_commas_comments_and_json(tmp_path: Path) -> None:
    plain = tmp_path / "a.txt"
    plain.write_text("BTC/USDT,ETH/USDT # majors\n# all commented\n  SOL/USDT\n")
    listed = tmp_path / "b.json"
    listed.write_text('["BTC/USDT", "XRP/USDT"]')
    assert read_watchlist(plain) == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    assert read_watchlist(listed) == ["BTC/USDT", "XRP/USDT"]


@asynccontextmanager
async def two_workers(settings: Settings) -> AsyncIterator[tuple[ProcessPoolDispatcher, Lifecycles]]:
    pool = ProcessPoolDispatcher(settings, workers=2)
    try:
        async with open_storage(settings) as storage:
            await pool.start()
            yield pool, Lifecycles(settings, storage)
    finally:
        pool.close()


@pytest.mark.postgres
async def test_worker_processes_share_postgres_and_each_decides_some(pg_settings: Settings) -> None:
    async with two_workers(pg_settings) as (pool, runs):
        symbols = [f"SYN{i:04d}/USDT" for i in range(1, 9)]
        summary = await Scans(runs).run(ScanRequest(scan_id="pool", symbols=symbols, as_of=CLOCK), pool, concurrency=4)
        assert sorted(e.symbol for e in summary.ranked) == symbols
        assert all(e.status in ("decided", "paused") for e in summary.ranked)
        assert len({e.worker for e in summary.ranked}) == 2
        for entry in summary.ranked:  # the coordinator reads what the workers wrote
            assert (await runs.outcome(entry.thread_id)).decision.action == entry.decision


@pytest.mark.postgres
async def test_local_workers_decide_each_symbol_at_home_and_carry_on_without_a_dead_one(pg_settings: Settings) -> None:
    """A symbol's home worker keeps its caches for the next cycle (tests/test_scan_cycles.py)."""
    async with two_workers(pg_settings) as (pool, runs):
        scans = Scans(runs)
        symbols = [f"SYN{i:04d}/USDT" for i in range(300, 310)]
        assert {pool.home(s) for s in symbols} == {0, 1}
        # One symbol at a time: its home worker is always free, so it is always the one.
        summary = await scans.run(ScanRequest(scan_id="homes", symbols=symbols, as_of=CLOCK), pool, concurrency=1)
        for entry in summary.ranked:
            assert entry.status in ("decided", "paused") and entry.worker.startswith(f"{pool.pids[pool.home(entry.symbol)]}@")
        # Worker 0 dies: its symbols go to worker 1; at most the one it was handed fails, and says why.
        os.kill(pool.pids[0], signal.SIGKILL)
        later = CLOCK + timedelta(minutes=5)
        summary = await scans.run(ScanRequest(scan_id="one-left", symbols=symbols, as_of=later), pool, concurrency=pool.concurrency)
        failed = [e for e in summary.ranked if e.status == "failed"]
        assert len(failed) <= 1 and all("BrokenProcessPool" in (e.reason or "") for e in failed)
        decided = [e for e in summary.ranked if e.status in ("decided", "paused")]
        assert len(decided) >= len(symbols) - 1 and all(e.worker.startswith(f"{pool.pids[1]}@") for e in decided)


@pytest.mark.postgres
async def test_a_local_worker_starts_nothing_once_the_desk_is_halted(pg_settings: Settings) -> None:
    """Symbols that reach a worker process after the halt (they waited in the pool while it landed): the
    worker reads the flag before each, starts none, and their run rows say why. (The scanner's own check,
    which stops dispatching, is in tests/test_scanner.py.)"""
    pool = ProcessPoolDispatcher(pg_settings, workers=1)
    try:
        async with open_storage(pg_settings) as storage:
            await pool.start()
            runs = Lifecycles(pg_settings, storage)
            await Governor(storage.ledger, storage.audit).halt("drawdown alarm", "erin", runs.hub.brokers())
            symbols = [f"SYN{i:04d}/USDT" for i in range(400, 403)]
            request = ScanRequest(scan_id="halt-pool", symbols=symbols, as_of=CLOCK)
            entries = await asyncio.gather(*(pool.decide(request, symbol, CLOCK) for symbol in symbols))
            for entry in entries:
                assert entry.status == "skipped" and "not started: trading halted (drawdown alarm)" in entry.reason
                assert entry.worker.startswith(f"{pool.pids[0]}@")
                assert (await storage.ledger.run(entry.thread_id))["status"] == "skipped"
                assert await storage.last_checkpoint_id(entry.thread_id) is None
    finally:
        pool.close()


async def test_api_lists_go_through_the_scanner(backend_settings: Settings) -> None:
    async with serving(backend_settings.model_copy(update={"llm_enabled": False})) as served:
        response = await served.client.post("/runs", json={"symbols": ["BTC/USDT", "ETH/USDT"], "scenario": "uptrend", "as_of": CLOCK.isoformat()})
        assert response.status_code == 202, response.text
        body = response.json()
        scan_id = body["scan_id"]
        assert [r["thread_id"] for r in body["runs"]] == [f"{scan_id}-btc-usdt", f"{scan_id}-eth-usdt"]
        waited = await served.client.post(
            "/runs", params={"wait": "true"}, json={"symbols": ["SOL/USDT", "XRP/USDT"], "scenario": "range", "as_of": CLOCK.isoformat()}
        )
        assert waited.status_code == 200 and {r["decision"]["action"] for r in waited.json()["runs"]} == {"HOLD"}
        ranked = (await served.client.get(f"/scans/{waited.json()['scan_id']}")).json()["ranked"]
        assert sorted(e["symbol"] for e in ranked) == ["SOL/USDT", "XRP/USDT"]
        assert (await served.client.get("/scans/nope")).status_code == 404
        refused = await served.client.post("/runs", json={"symbols": ["BTC/USDT", "ETH/USDT"], "broker": "live"})
        assert refused.status_code in (403, 422)
