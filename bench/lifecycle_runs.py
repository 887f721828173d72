"""Times single-symbol lifecycle runs on the embedded SQLite file and on PostgreSQL.

    .venv/bin/python bench/lifecycle_runs.py [--runs 40] [--backends none,sqlite,postgres]

Prints, per backend and durability: median and p95 milliseconds per run,
checkpoint bytes per run (summed over the saver's tables for the bench's own
threads) and audit-table rows per run. `none` runs the same graph without a checkpointer, which separates
the analysis work from what persistence costs. Postgres gets a scratch
database that is dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from api.runs import Lifecycles, make_request, new_thread_id
from graphs.trade_lifecycle import RECURSION_LIMIT, build_graph
from nodes.strategies import registered_strategies
from state import Settings
from tools.storage import open_storage
from tools.context import build_services

CLOCK = datetime(2026, 11, 20, 13, 37, tzinfo=UTC)
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def checkpoint_bytes(settings: Settings, threads: list[str]) -> int:
    if settings.database_url:
        query = """
            SELECT coalesce((SELECT sum(octet_length(checkpoint::text) + octet_length(metadata::text)) FROM checkpoints WHERE thread_id = ANY(%(t)s)), 0)
                 + coalesce((SELECT sum(octet_length(blob)) FROM checkpoint_blobs WHERE thread_id = ANY(%(t)s)), 0)
                 + coalesce((SELECT sum(octet_length(blob)) FROM checkpoint_writes WHERE thread_id = ANY(%(t)s)), 0)
        """
        async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
            row = await (await conn.execute(query, {"t": threads})).fetchone()
            return int(row[0])
    import sqlite3

    with sqlite3.connect(settings.sqlite_path) as conn:
        marks = ",".join("?" * len(threads))
        a = conn.execute(f"SELECT coalesce(sum(length(checkpoint) + length(metadata)), 0) FROM checkpoints WHERE thread_id IN ({marks})", threads).fetchone()[0]
        b = conn.execute(f"SELECT coalesce(sum(length(value)), 0) FROM writes WHERE thread_id IN ({marks})", threads).fetchone()[0]
        return int(a + b)


async def time_runs(settings: Settings, runs: int, scenario: str, durability: str | None, saver_wanted: bool) -> dict[str, float]:
    """With a saver, runs go through `Lifecycles.start`: checkpoints, the audit table and the ledger all count.

    Each run's position is closed again afterwards, so every run meets the same empty book and takes the
    same path down to the fill (a growing book would turn later runs into exposure rejections).
    """

    async def body(storage) -> dict[str, float]:
        runner = Lifecycles(settings, storage) if storage else None
        graph = build_graph()
        samples, threads, audit_rows = [], [], 0
        for i in range(runs + 3):
            request = make_request(settings, f"BENCH{i % 50}/USDT", scenario=scenario, as_of=CLOCK)
            thread_id = new_thread_id(request.symbol)
            started = time.perf_counter()
            if runner:
                outcome = await runner.start(request, thread_id=thread_id, durability=durability or "async")
            else:
                config = {"configurable": {"thread_id": thread_id}, "recursion_limit": RECURSION_LIMIT}
                outcome = None
                await graph.ainvoke({"request": request}, config, context=build_services(settings, request))
            elapsed = (time.perf_counter() - started) * 1000
            if outcome is not None and "orders" in outcome.values:
                position = outcome.values["orders"].position
                await storage.ledger.update(position.model_copy(update={"status": "closed", "closed_at": CLOCK, "realized_pnl": 0.0}))
                audit_rows += len(await storage.audit.trail(thread_id))
            if i >= 3:  # the first runs pay imports and TA-Lib warm-up
                samples.append(elapsed)
                threads.append(thread_id)
        result = {"median_ms": statistics.median(samples), "p95_ms": percentile(samples, 0.95)}
        if storage:
            result["checkpoint_bytes_per_run"] = await checkpoint_bytes(settings, threads) / len(threads)
            result["audit_rows_per_run"] = audit_rows / (runs + 3)
        return result

    if not saver_wanted:
        return await body(None)
    async with open_storage(settings) as storage:
        return await body(storage)


LAYERS = {
    "L1 ingestion": {"sanity", "market_data", "data_quality"},
    "L2 features": {"regime", "structure", "key_levels", "volume", "alt_data"},
    "L3 levels": {"support_resistance", "fibonacci", "anchored_vwap", "confluence"},
    "L4 strategies": {"strategy"},
    "L5-L9 decide+act": {"aggregate", "verify", "risk", "approval", "execute", "audit"},
}


async def layer_times(settings: Settings, runs: int, scenario: str) -> dict[str, float]:
    """Mean wall milliseconds per layer: from its first task's start to its last task's result.

    Layers run one after another, and the nodes inside one run side by side, so
    the spans add up to the run's time without counting parallel work twice.
    """
    graph = build_graph()
    totals: dict[str, float] = {layer: 0.0 for layer in LAYERS}
    for i in range(runs + 3):
        request = make_request(settings, f"LAYER{i}/USDT", scenario=scenario, as_of=CLOCK)
        spans: dict[str, list[datetime]] = {}
        async for item in graph.astream({"request": request}, context=build_services(settings, request), stream_mode="debug"):
            name = item["payload"].get("name")
            layer = next((layer for layer, names in LAYERS.items() if name in names), None)
            if layer and item["type"] in ("task", "task_result"):
                spans.setdefault(layer, []).append(datetime.fromisoformat(item["timestamp"]))
        if i >= 3:  # the first runs pay imports and TA-Lib warm-up
            for layer, stamps in spans.items():
                totals[layer] += (max(stamps) - min(stamps)).total_seconds() * 1000
    return {layer: total / runs for layer, total in totals.items()}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--backends", default="none,sqlite,postgres")
    parser.add_argument("--scenario", default="uptrend", help="uptrend runs every stage down to the paper fill")
    parser.add_argument("--postgres-admin-url", default=ADMIN_URL)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="aitrader-bench-"))
    database = f"aitrader_bench_{uuid.uuid4().hex[:8]}"
    backends = args.backends.split(",")
    if "postgres" in backends:
        with psycopg.connect(args.postgres_admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{database}"')
    try:
        pool = len(registered_strategies())
        print(f"{args.runs} runs per row, scenario {args.scenario}, 6 timeframes x 300 candles, {pool} strategies, paper broker")
        print(f"{'backend':<10} {'durability':<10} {'median ms':>10} {'p95 ms':>9} {'ckpt bytes/run':>15} {'audit rows/run':>15}")
        for backend in backends:
            url = args.postgres_admin_url.rsplit("/", 1)[0] + f"/{database}" if backend == "postgres" else None
            settings = Settings(_env_file=None, home=home, database_url=url)
            modes = [None] if backend == "none" else ["async", "exit"]
            for mode in modes:
                figures = await time_runs(settings, args.runs, args.scenario, mode, backend != "none")
                size, rows = figures.get("checkpoint_bytes_per_run"), figures.get("audit_rows_per_run")
                print(
                    f"{backend:<10} {mode or '-':<10} {figures['median_ms']:>10.1f} {figures['p95_ms']:>9.1f} "
                    f"{(f'{size:,.0f}' if size is not None else '-'):>15} {(f'{rows:.0f}' if rows is not None else '-'):>15}"
                )
        if "none" in backends:
            print("\nper layer, no saver, mean wall ms:")
            for layer, ms in (await layer_times(Settings(_env_file=None, home=home), args.runs, args.scenario)).items():
                print(f"  {layer:<18} {ms:6.1f} ms")
    finally:
        if "postgres" in backends:
            with psycopg.connect(args.postgres_admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


if __name__ == "__main__":
    asyncio.run(main())
