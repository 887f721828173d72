"""Scans of 10, 100 and 1,000 symbols on the built-in data, with Postgres checkpoints and local worker processes.

    .venv/bin/python bench/scan_throughput.py [--sizes 10,100,1000] [--workers 2] [--profile]

Per size: wall seconds, symbols per second, CPU milliseconds per symbol (the worker
processes, this coordinating process, the PostgreSQL server), per-symbol decision latency (p50 / p95,
measured in the worker from dispatch to decision), peak memory (the coordinator plus
every worker, summed peak RSS), checkpoint bytes per symbol and how many symbols were
re-run with per-step checkpoints (trade proposals), and then the same symbols scanned again at
the next 5m close (the scheduled case: sym/s, p50, p95, and the share of symbols decided by the
same worker as before, whose caches hold their unchanged frames' answers). All six timeframes, every
strategy, no LLM, paper broker, observe approval. Each size gets a scratch database;
worker start-up (imports, storage) is excluded and reported once.

Then, on the largest size's database, single-symbol decisions: new symbols decided one at a time
in this process, with nothing else running (p50 / p95): the latency of one decision, where the
scans' latencies are those of decisions made while both cores are busy with others.

Then, in this process on one core: what a lifecycle costs, and what the graph runtime
alone costs (the same runs with every node replaced by its recorded answer), and
with --profile a pyinstrument profile of single-symbol decisions (bench/results/).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from api.runs import Lifecycles, make_request
from api.scan import Scans
from api.scan_pool import ProcessPoolDispatcher
from lifecycle_runs import ADMIN_URL, checkpoint_bytes, percentile
from state import Settings
from state.scan import ScanRequest
from tools.context import ServiceHub
from tools.market_data.builtin import builtin_markets
from tools.storage import open_storage

CLOCK = datetime(2026, 11, 20, 13, 37, tzinfo=UTC)
NEXT_CLOSE = timedelta(minutes=5)
OUTPUT = Path(__file__).resolve().parent / "results"


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next((int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:")), 0.0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_pids() -> list[int]:
    """The local PostgreSQL server's processes (its backends do the database's share of a scan)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def cpu_snapshot() -> dict[str, float]:
    me = os.getpid()
    return {
        "coordinator": cpu_seconds(me),
        "workers": sum(cpu_seconds(pid) for pid in children(me)),
        "postgres": sum(cpu_seconds(pid) for pid in postgres_pids()),
    }


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


async def scan_once(settings: Settings, symbols: list[str], workers: int, concurrency: int) -> dict[str, float]:
    pool = ProcessPoolDispatcher(settings, workers)
    try:
        async with open_storage(settings) as storage:
            started = time.perf_counter()
            await pool.start()
            startup = time.perf_counter() - started
            runs = Lifecycles(settings, storage)
            scans = Scans(runs)
            # Each worker pays TA-Lib and pandas warm-up on its first symbols: not what a long scan sees.
            warm = [m.symbol for m in builtin_markets()[-4 * workers :]]
            await scans.run(ScanRequest(scan_id=f"warm-{uuid.uuid4().hex[:6]}", symbols=warm, as_of=CLOCK), pool, concurrency=concurrency)
            cpu_before, started = cpu_snapshot(), time.perf_counter()
            summary = await scans.run(ScanRequest(scan_id="bench", symbols=symbols, as_of=CLOCK), pool, concurrency=concurrency)
            wall = time.perf_counter() - started
            cpu = {k: (v - cpu_before[k]) * 1000 / len(symbols) for k, v in cpu_snapshot().items()}
            entries = summary.ranked
            latencies = [e.elapsed_ms for e in entries if e.elapsed_ms is not None]
            threads = [e.thread_id for e in entries if e.thread_id]
            size = await checkpoint_bytes(settings, threads)
            # The scheduled case (`scan --every 5m`): the same symbols at the next 5m close, on the same workers,
            # whose caches keep the 15m..1w frames and what the nodes derived from them. The pool sends a symbol to
            # its home worker unless another would idle meanwhile: "same worker" is the share that met their cache.
            started = time.perf_counter()
            following = await scans.run(ScanRequest(scan_id="bench-next", symbols=symbols, as_of=CLOCK + NEXT_CLOSE), pool, concurrency=concurrency)
            next_wall = time.perf_counter() - started
            next_latencies = [e.elapsed_ms for e in following.ranked if e.elapsed_ms is not None]
            first_worker = {e.symbol: e.worker for e in entries}
            same_worker = sum(1 for e in following.ranked if e.worker and e.worker == first_worker.get(e.symbol)) / len(symbols)
        memory = peak_rss_mib(os.getpid()) + sum(peak_rss_mib(pid) for pid in children(os.getpid()) if Path(f"/proc/{pid}").exists())
        return {
            "startup_s": startup,
            "wall_s": wall,
            "per_s": len(symbols) / wall,
            "p50_ms": statistics.median(latencies),
            "p95_ms": percentile(latencies, 0.95),
            "peak_mib": memory,
            "ckpt_bytes": size / max(1, len(threads)),
            # Trade proposals: they reached the approval (paused there, or decided at it or at execution).
            "committed": sum(1 for e in entries if e.status == "paused" or e.stage in ("approval", "execute")),
            "failed": sum(1 for e in entries if e.status not in ("decided", "paused")),
            "next_per_s": len(symbols) / next_wall,
            "next_p50_ms": statistics.median(next_latencies),
            "next_p95_ms": percentile(next_latencies, 0.95),
            "next_same_worker": same_worker,
            **{f"cpu_{k}": v for k, v in cpu.items()},
        }
    finally:
        pool.close()


async def single_symbol_latencies(settings: Settings, count: int) -> list[float]:
    """Decision latency of symbols decided alone, one after another, in this process: the path of a
    scan's symbol (claim, screen, commit pass for a trade proposal, Postgres records), with nothing
    else running. Each symbol is new to the process (cold caches), as in the scans' first pass."""
    from api.scan import decide_symbol

    async with open_storage(settings) as storage:
        runs = Lifecycles(settings, storage)
        symbols = [f"SYN{6000 + i:04d}/USDT" for i in range(count + 3)]
        scan = ScanRequest(scan_id=f"alone-{uuid.uuid4().hex[:6]}", symbols=symbols, as_of=CLOCK)
        for symbol in symbols[:3]:  # warm-up: imports, TA-Lib
            await decide_symbol(runs, scan, symbol, CLOCK)
        entries = [await decide_symbol(runs, scan, symbol, CLOCK) for symbol in symbols[3:]]
    return [e.elapsed_ms for e in entries if e.elapsed_ms is not None]


async def graph_runtime_share(runs_count: int) -> tuple[float, float]:
    """(ms per run, ms per run of LangGraph's runtime alone), one core, no saver.

    The runtime alone is the same graph, same inputs, with every node replaced by a stub
    that returns, at once, the update the real node returned for that input: what is
    left is LangGraph's scheduling, channels, reducers and streaming.
    """
    import graphs.trade_lifecycle as wiring

    recorded: dict[tuple[str, str, str], object] = {}
    replaying = [False]

    def key(name: str, state) -> tuple[str, str, str]:
        return (name, state["request"].symbol, str(state.get("strategy") or state.get("index") or ""))

    def wrapped(name: str, node):
        @functools.wraps(node)
        async def run(state, runtime):
            if replaying[0]:
                return recorded[key(name, state)]
            update = await node(state, runtime)
            recorded[key(name, state)] = update
            return update

        return run

    names = [n for n in dir(wiring) if callable(getattr(wiring, n)) and getattr(getattr(wiring, n), "__module__", "").startswith("nodes.")]
    originals = {n: getattr(wiring, n) for n in names}
    for name, node in originals.items():
        setattr(wiring, name, wrapped(name, node))
    try:
        graph = wiring.build_graph()
    finally:
        for name, node in originals.items():
            setattr(wiring, name, node)
    settings = Settings(_env_file=None, home=Path(tempfile.mkdtemp(prefix="aitrader-bench-")))
    hub = ServiceHub(settings)
    requests = [make_request(settings, f"SYN{2000 + i:04d}/USDT", as_of=CLOCK) for i in range(runs_count + 3)]

    async def timed() -> float:
        began = time.perf_counter()
        for request in requests[3:]:
            await graph.ainvoke({"request": request}, {"recursion_limit": wiring.RECURSION_LIMIT}, context=hub.for_request(request))
        return (time.perf_counter() - began) * 1000 / runs_count

    for request in requests[:3]:  # warm-up: imports, TA-Lib
        await graph.ainvoke({"request": request}, {"recursion_limit": wiring.RECURSION_LIMIT}, context=hub.for_request(request))
    whole = await timed()
    replaying[0] = True
    return whole, await timed()


async def profile(runs_count: int) -> Path:
    from pyinstrument import Profiler

    from graphs.trade_lifecycle import RECURSION_LIMIT, build_graph

    settings = Settings(_env_file=None, home=Path(tempfile.mkdtemp(prefix="aitrader-bench-")))
    hub, graph = ServiceHub(settings), build_graph()
    profiler = Profiler(interval=0.001)
    for i in range(runs_count + 3):
        request = make_request(settings, f"SYN{2100 + i:04d}/USDT", as_of=CLOCK)
        if i == 3:
            profiler.start()
        await graph.ainvoke({"request": request}, {"recursion_limit": RECURSION_LIMIT}, context=hub.for_request(request))
    profiler.stop()
    OUTPUT.mkdir(exist_ok=True)
    path = OUTPUT / "scan_profile.txt"
    path.write_text(profiler.output_text(unicode=False, color=False))
    return path


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--concurrency", type=int, default=None, help="symbols in flight (default three per worker, as `aitrader scan`)")
    parser.add_argument("--postgres-admin-url", default=ADMIN_URL)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    concurrency = args.concurrency or 3 * args.workers  # ProcessPoolDispatcher.concurrency: one running, two waiting per worker
    universe = [m.symbol for m in builtin_markets() if m.quote == "USDT"]
    print(f"built-in data, 6 timeframes, every strategy, no LLM, paper, Postgres; {args.workers} worker processes, {concurrency} in flight")
    print(f"{'symbols':>8} {'wall s':>8} {'sym/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'peak MiB':>9} {'ckpt B/sym':>11} {'re-run':>7} {'failed':>7} {'start s':>8}   CPU ms/symbol: workers, coordinator, PostgreSQL; next 5m cycle: sym/s, p50, p95 ms, same worker")
    sizes = [int(s) for s in args.sizes.split(",")]
    alone: list[float] = []
    for size in sizes:
        database = f"aitrader_scan_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.postgres_admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{database}"')
        try:
            url = args.postgres_admin_url.rsplit("/", 1)[0] + f"/{database}"
            settings = Settings(_env_file=None, home=Path(tempfile.mkdtemp(prefix="aitrader-bench-")), database_url=url, llm_enabled=False)
            f = await scan_once(settings, universe[:size], args.workers, concurrency)
            if size == max(sizes):
                alone = await single_symbol_latencies(settings, min(size, 200))
            print(
                f"{size:>8} {f['wall_s']:>8.1f} {f['per_s']:>7.1f} {f['p50_ms']:>7.0f} {f['p95_ms']:>7.0f} {f['peak_mib']:>9.0f} "
                f"{f['ckpt_bytes']:>11,.0f} {f['committed']:>7.0f} {f['failed']:>7.0f} {f['startup_s']:>8.1f}   "
                f"{f['cpu_workers']:.0f}, {f['cpu_coordinator']:.0f}, {f['cpu_postgres']:.0f}; {f['next_per_s']:.1f}, {f['next_p50_ms']:.0f}, "
                f"{f['next_p95_ms']:.0f}, {f['next_same_worker']:.0%}",
                flush=True,
            )
        finally:
            with psycopg.connect(args.postgres_admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    print(
        f"\nsingle-symbol decisions, one at a time in one process (Postgres, new symbols): "
        f"p50 {statistics.median(alone):.0f} ms, p95 {percentile(alone, 0.95):.0f} ms over {len(alone)}"
    )
    wall, runtime = await graph_runtime_share(30)
    print(f"one lifecycle, one core, no saver: {wall:.1f} ms per run, of which LangGraph's runtime (nodes stubbed) {runtime:.1f} ms")
    if args.profile:
        print(f"profile of 20 decisions: {await profile(20)}")


if __name__ == "__main__":
    asyncio.run(main())
