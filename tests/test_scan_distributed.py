"""A 200-symbol scan over RabbitMQ survives a worker killed mid-scan, and decides every symbol exactly once.

Real: the RabbitMQ server (127.0.0.1:5672, or AITRADER_TEST_BROKER_URL) with a queue of
this test's own, deleted afterwards; the PostgreSQL server, with a scratch database
(tests/conftest.py); two `taskiq worker` process trees started the way `aitrader worker`
starts them (`python -m api.scan_distributed worker`, which execs taskiq), each in its own
process group, one of them SIGKILLed as a whole once a quarter of the entries have landed.
Not real: the market data (the built-in synthetic source at a fixed moment), the broker
(paper, approval policy "observe", so no run waits for a human) and the LLM (off).

Which symbols the killed worker had started and not finished is read from the workers'
logs (a line when a task starts, one when it has settled, before its message is acked).
In CI (CI=true) an unreachable RabbitMQ fails the test; elsewhere it is skipped.
Also here: `aitrader scan --distributed` against one worker, and a worker that finds the
desk halted before it starts a symbol.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import pytest

from api.runs import Lifecycles
from api.scan import Scans
from api.scan_distributed import TaskiqDispatcher, make_broker
from state import Settings
from state.scan import ScanRequest
from tools.governor import Governor
from tools.market_data.builtin import builtin_markets
from tools.storage import open_storage

pytestmark = pytest.mark.postgres

BROKER_URL = os.environ.get("AITRADER_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
ROOT = Path(__file__).resolve().parents[1]
AS_OF = datetime(2026, 11, 20, 13, 37, tzinfo=UTC)
SYMBOLS = [m.symbol for m in builtin_markets() if m.quote == "USDT"][:200]
KILL_AFTER = len(SYMBOLS) // 4
READY = re.compile(r"worker=(\S+) ready on")
DECIDING = re.compile(r"worker=\S+ deciding (\S+) thread=")
DECIDED = re.compile(r"worker=\S+ decided (\S+) status=")


@pytest.fixture
async def scan_queue() -> AsyncIterator[str]:
    """A queue name of this test's own; the queue and its dead-letter queue are deleted afterwards."""
    name = f"aitrader.scan.test-{uuid.uuid4().hex[:10]}"
    try:
        connection = await aio_pika.connect(BROKER_URL, timeout=5)
    except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as error:
        message = f"RabbitMQ unreachable at {BROKER_URL}: {error!r}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message + " (set CI=true to make this a failure)")
    await connection.close()
    yield name
    async with await aio_pika.connect(BROKER_URL, timeout=10) as connection:
        channel = await connection.channel()
        for queue in (name, f"{name}.dead_letter"):
            await channel.queue_delete(queue)


def process_env(settings: Settings, queue: str) -> dict[str, str]:
    """What a worker or coordinator process gets: this test's database and queue, no LLM, no stray settings."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("AITRADER_")},
        "AITRADER_DATABASE_URL": str(settings.database_url),
        "AITRADER_BROKER_URL": BROKER_URL,
        "AITRADER_SCAN_QUEUE": queue,
        "AITRADER_LLM_ENABLED": "false",
    }


class Worker:
    """One `aitrader worker --workers 1` process tree in a process group of its own, logging to a file."""

    def __init__(self, name: str, env: dict[str, str], directory: Path) -> None:
        self.log = directory / f"{name}.log"
        home = directory / f"{name}-home"
        home.mkdir()
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "api.scan_distributed", "worker", "--workers", "1", "--max-async-tasks", "2"],
                cwd=ROOT,
                env={**env, "AITRADER_HOME": str(home)},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: the taskiq manager and its worker process die together
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def worker_id(self) -> str | None:
        found = READY.search(self.text())
        return found.group(1) if found else None

    def started(self) -> set[str]:
        return set(DECIDING.findall(self.text()))

    def settled(self) -> set[str]:
        return set(DECIDED.findall(self.text()))

    def kill(self) -> None:
        with_group = os.getpgid(self.process.pid)
        os.killpg(with_group, signal.SIGKILL)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


async def wait_ready(workers: list[Worker], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(w.worker_id() for w in workers):
        for worker in workers:
            if worker.process.poll() is not None:
                pytest.fail(f"worker exited with {worker.process.returncode}:\n{worker.text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail("workers not ready in time:\n" + "\n---\n".join(w.text()[-2000:] for w in workers))
        await asyncio.sleep(0.5)


async def test_scan_survives_a_killed_worker_and_decides_each_symbol_once(pg_settings: Settings, scan_queue: str, tmp_path: Path) -> None:
    env = process_env(pg_settings, scan_queue)
    workers = [Worker(name, env, tmp_path) for name in ("worker-a", "worker-b")]
    victim, survivor = workers
    request = ScanRequest(scan_id=f"dist-{uuid.uuid4().hex[:8]}", symbols=SYMBOLS, as_of=AS_OF, approval_mode="observe")
    landed: list[dict] = []
    killed_at: list[int] = []

    def on_event(event: dict) -> None:
        if event.get("scan") != "symbol":
            return
        landed.append(event["entry"])
        if len(landed) >= KILL_AFTER and not killed_at:
            victim.kill()
            killed_at.append(len(landed))

    try:
        async with open_storage(pg_settings) as storage:
            runs = Lifecycles(pg_settings, storage)
            try:
                await wait_ready(workers)
                async with TaskiqDispatcher(runs, make_broker(BROKER_URL, scan_queue)) as dispatcher:
                    summary = await asyncio.wait_for(Scans(runs).run(request, dispatcher, concurrency=8, on_event=on_event), timeout=1800)
                decisions = await storage.ledger.db.fetch(
                    "SELECT thread_id, COUNT(*) AS n FROM aitrader_audit WHERE node = 'audit' AND event = 'DECISION' GROUP BY thread_id"
                )
                doubled = await storage.ledger.db.fetch(
                    "SELECT thread_id, COUNT(*) AS n FROM aitrader_positions GROUP BY thread_id HAVING COUNT(*) > 1"
                )
                ledger_rows = await storage.ledger.runs(limit=10_000)
            finally:
                await runs.hub.aclose()
    finally:
        for worker in workers:
            worker.stop()

    # The scan finished with every symbol decided, through the kill.
    assert killed_at, "the victim was never killed"
    entries = {entry.symbol: entry for entry in summary.ranked}
    assert len(summary.ranked) == len(SYMBOLS) == len(entries)
    assert {e.status for e in summary.ranked} <= {"decided", "paused"}, summary.counts
    assert all(e.decision for e in summary.ranked if e.status == "decided")

    # Both workers decided symbols; what the victim had started and not settled, the survivor did.
    victim_id, survivor_id = victim.worker_id(), survivor.worker_id()
    assert victim_id and survivor_id and victim_id != survivor_id
    unfinished = victim.started() - victim.settled()
    assert unfinished, "the victim was killed between symbols: nothing was redelivered"
    assert unfinished <= survivor.settled(), survivor.text()[-3000:]
    assert all(entries[symbol].status == "decided" for symbol in unfinished)
    by_worker = {e.worker for e in summary.ranked}
    assert {victim_id, survivor_id} <= by_worker, by_worker
    # Every entry names the worker whose checkpoint holds its decision (a continued commit pass names the survivor).
    assert all(e.worker in (victim_id, survivor_id) for e in summary.ranked), by_worker
    assert all(entries[symbol].worker != victim_id or symbol in victim.settled() or symbol in unfinished for symbol in entries)

    # Exactly once in Postgres: one DECISION audit row per thread, no thread with two positions, every run done.
    threads = {e.thread_id for e in summary.ranked}
    counts = {row["thread_id"]: row["n"] for row in decisions if row["thread_id"] in threads}
    wrong = {e.symbol: (counts.get(e.thread_id, 0), e.worker, e.symbol in unfinished) for e in summary.ranked if counts.get(e.thread_id) != 1}
    assert not wrong, f"DECISION rows per thread other than one (rows, worker, unfinished on the victim): {wrong}"
    assert doubled == []
    statuses = {row["thread_id"]: row["status"] for row in ledger_rows if row["thread_id"] in threads}
    assert statuses == {thread_id: "done" for thread_id in threads}


async def test_the_cli_scans_through_an_aitrader_worker(pg_settings: Settings, scan_queue: str, tmp_path: Path) -> None:
    """`aitrader scan --distributed` as an operator runs it, against one `aitrader worker` process tree."""
    env = process_env(pg_settings, scan_queue)
    worker = Worker("worker", env, tmp_path)
    try:
        await wait_ready([worker])
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "api.cli", "scan", "BTC/USDT", "ETH/USDT", "SOL/USDT", "--as-of", "2026-11-20T13:37", "--distributed", "--json", "--quiet"],
            env={**env, "AITRADER_HOME": str(tmp_path / "coordinator")},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        worker.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)["results"]
    assert sorted(r["symbol"] for r in results) == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    assert all(r["status"] == "decided" and r["worker"] == worker.worker_id() for r in results)
    assert worker.settled() == {"BTC/USDT", "ETH/USDT", "SOL/USDT"}


async def test_a_symbol_on_the_queue_when_the_desk_halts_never_starts(pg_settings: Settings, scan_queue: str, tmp_path: Path) -> None:
    """The coordinator checks the kill switch before it sends a symbol; one sent before the halt waits on the
    queue. Here it is sent after the halt, as if it had waited: the worker reads the flag, starts nothing, and
    writes why on the symbol's run row, where the coordinator reads its entry."""
    env = process_env(pg_settings, scan_queue)
    worker = Worker("worker", env, tmp_path)
    request = ScanRequest(scan_id=f"halted-{uuid.uuid4().hex[:8]}", symbols=["BTC/USDT"], as_of=AS_OF)
    try:
        async with open_storage(pg_settings) as storage:
            runs = Lifecycles(pg_settings, storage)
            try:
                await wait_ready([worker])
                await Governor(storage.ledger, storage.audit).halt("drawdown alarm", "erin", runs.hub.brokers())
                async with TaskiqDispatcher(runs, make_broker(BROKER_URL, scan_queue), timeout=300) as dispatcher:
                    entry = await dispatcher.decide(request, "BTC/USDT", AS_OF)
                row = await storage.ledger.run(entry.thread_id)
                checkpoint = await storage.last_checkpoint_id(entry.thread_id)
            finally:
                await runs.hub.aclose()
    finally:
        worker.stop()
    assert entry.status == "skipped" and "not started: trading halted (drawdown alarm)" in entry.reason, entry
    assert row["status"] == "skipped" and checkpoint is None
    assert worker.settled() == {"BTC/USDT"}  # the worker took the message and settled it without a lifecycle
