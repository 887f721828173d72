"""`aitrader scan`: a watchlist through the scanner graph, with a progress bar and a ranked table.

`--every 5m` keeps scanning, once per close of that candle: every cycle decides at
the close it waited for, in a scan of its own. The worker processes (and their
indicator caches, sanity verdicts and candle-store sessions) live across cycles.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from api.runs import Lifecycles
from api.scan import InProcessDispatcher, Scans
from api.scan_pool import ProcessPoolDispatcher
from state.scan import ScanEntry, ScanRequest, ScanSummary
from state.sections import KNOWN_TIMEFRAMES
from tools.scan import SymbolDispatcher
from tools.timeframes import floor_time, period

if TYPE_CHECKING:
    from api.scan_distributed import TaskiqDispatcher


SMALL_SCAN = 16  # symbols below which one process beats spawning workers


def add_parser(sub: Any) -> None:
    scan = sub.add_parser("scan", help="decide a watchlist, one lifecycle thread per symbol, ranked")
    scan.add_argument("symbols", nargs="*", help="symbols to scan (or --watchlist / --top)")
    scan.add_argument("--watchlist", type=Path, help="file of symbols: one per line or comma-separated, # comments")
    scan.add_argument("--top", type=int, help="the N most traded active spot markets of the source")
    scan.add_argument("--quote", default="USDT", help="quote currency for --top (default USDT)")
    scan.add_argument("--min-volume", type=float, default=0.0, help="24h quote-volume floor for --top")
    scan.add_argument("--source", choices=["builtin", "files", "ccxt"])
    scan.add_argument("--exchange")
    scan.add_argument("--data-dir")
    scan.add_argument("--scenario", help="built-in market shape for every symbol (default: each symbol's own)")
    scan.add_argument("--approval", choices=["observe", "threshold", "always"])
    scan.add_argument("--timeframes", help="comma-separated, e.g. 5m,15m,1h,4h,1d,1w")
    scan.add_argument("--decision-timeframe")
    scan.add_argument("--as-of", type=datetime.fromisoformat, help="decide at this moment (with --every: the first cycle's)")
    scan.add_argument("--workers", type=int, default=None, help=f"worker processes (default: one per core, or this process alone for fewer than {SMALL_SCAN} symbols)")
    scan.add_argument("--concurrency", type=int, default=None, help="symbols in flight at once (default: three per worker process, one running and two waiting; 16 with --distributed)")
    scan.add_argument("--distributed", action="store_true", help="send symbols to `aitrader worker` processes over RabbitMQ (AITRADER_BROKER_URL; Postgres)")
    scan.add_argument("--every", help="re-scan on each close of this candle, e.g. 5m (the smallest timeframe)")
    scan.add_argument("--cycles", type=int, help="with --every: stop after this many cycles (default: run until stopped)")
    scan.add_argument("--scan-id", help="name of the scan (default: a new one)")
    scan.add_argument("--quiet", action="store_true", help="no progress bar")
    scan.add_argument("--json", action="store_true", help="print one JSON document with a `results` list")


def read_watchlist(path: Path) -> list[str]:
    try:
        text = path.read_text()
    except OSError as error:
        raise ValueError(f"cannot read watchlist {path}: {error.strerror or error}") from error
    if text.lstrip().startswith("["):
        return [str(item) for item in json.loads(text)]
    lines = (line.split("#", 1)[0] for line in text.splitlines())
    return [symbol for line in lines for symbol in re.split(r"[,\s]+", line) if symbol]


def scan_request(args: argparse.Namespace, scan_id: str, as_of: datetime | None) -> ScanRequest:
    named = list(args.symbols) + (read_watchlist(args.watchlist) if args.watchlist else [])
    if named and args.top:
        raise ValueError("give symbols (or --watchlist) or --top, not both")
    if not named and not args.top:
        raise ValueError("nothing to scan: give symbols, --watchlist FILE or --top N")
    return ScanRequest(
        scan_id=scan_id,
        symbols=named or None,
        top=args.top,
        quote=args.quote.upper(),
        min_quote_volume=args.min_volume,
        as_of=as_of,
        source=args.source,
        scenario=args.scenario,
        data_dir=str(Path(args.data_dir).resolve()) if args.data_dir else None,
        exchange=args.exchange,
        timeframes=args.timeframes.split(",") if args.timeframes else None,
        decision_timeframe=args.decision_timeframe,
        approval_mode=args.approval,
    )


def results_document(summary: ScanSummary) -> dict[str, Any]:
    return {
        "scan_id": summary.scan_id,
        "as_of": summary.as_of.isoformat() if summary.as_of else None,
        "counts": summary.counts,
        "halted": summary.halted,
        "results": [entry.model_dump(mode="json") for entry in summary.ranked],
    }


def render_table(summary: ScanSummary, limit: int = 50) -> str:
    moment = f"{summary.as_of:%Y-%m-%d %H:%M} UTC" if summary.as_of else "each symbol's newest candle"
    lines = [f"scan {summary.scan_id} at {moment}: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.counts.items()))]
    if summary.halted:
        lines.append(f"HALTED: {summary.halt_reason}; symbols not yet dispatched were skipped")
    lines.append(f"{'#':>4}  {'symbol':<14} {'decision':<8} {'consensus':<9} {'conf':>5} {'score':>6}  {'stage':<10} {'thread':<34} reason")
    for rank, entry in enumerate(summary.ranked[:limit], start=1):
        lines.append(_row(rank, entry))
    if len(summary.ranked) > limit:
        lines.append(f"      ... {len(summary.ranked) - limit} more (--json lists them all)")
    return "\n".join(lines)


def _row(rank: int, e: ScanEntry) -> str:
    marker = "*" if e.actionable else " "
    conf = f"{e.confidence:.2f}" if e.confidence is not None else "-"
    score = f"{e.score:+.2f}" if e.score is not None else "-"
    decision = e.decision or e.status.upper()
    return f"{rank:>3}{marker}  {e.symbol:<14} {decision:<8} {e.consensus or '-':<9} {conf:>5} {score:>6}  {e.stage or '-':<10} {e.thread_id or '-':<34} {e.reason[:70]}"


def next_close(moment: datetime, interval: str) -> datetime:
    return floor_time(moment, interval) + period(interval)


async def scan_command(args: argparse.Namespace, runs: Lifecycles) -> int:
    if args.every and args.every not in KNOWN_TIMEFRAMES:
        raise ValueError(f"--every {args.every}: not a timeframe; known: {', '.join(KNOWN_TIMEFRAMES)}")
    if args.cycles is not None and (args.cycles < 1 or not args.every):
        raise ValueError("--cycles needs --every and a positive count")
    # Spawning a worker costs seconds (imports, storage); a short list is decided faster in this process.
    named = len(args.symbols) + (len(read_watchlist(args.watchlist)) if args.watchlist else 0)
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1) if (args.top or named) >= SMALL_SCAN else 1
    dispatcher: SymbolDispatcher = InProcessDispatcher(runs)
    pool: ProcessPoolDispatcher | None = None
    remote: TaskiqDispatcher | None = None
    if args.distributed:
        if not runs.settings.database_url:
            raise ValueError("--distributed needs AITRADER_DATABASE_URL: workers on other hosts share the Postgres database")
        from api.scan_distributed import TaskiqDispatcher  # taskiq and aio-pika only when distributing

        remote = TaskiqDispatcher(runs)
        await remote.start()
        dispatcher = remote
    elif workers > 1:
        pool = ProcessPoolDispatcher(runs.settings, workers)
        await pool.start()
        dispatcher = pool
    concurrency = args.concurrency or (16 if remote else pool.concurrency if pool else workers)
    scans = Scans(runs)
    base_id = args.scan_id or f"scan-{uuid.uuid4().hex[:8]}"
    as_of = args.as_of.astimezone(UTC) if args.as_of and args.as_of.tzinfo else (args.as_of.replace(tzinfo=UTC) if args.as_of else None)
    try:
        cycle = 0
        while True:
            cycle += 1
            if args.every:
                as_of = as_of or floor_time(datetime.now(UTC), args.every)
            scan_id = f"{base_id}-{as_of:%Y%m%dT%H%M}" if args.every else base_id
            request = scan_request(args, scan_id, as_of)
            summary = await _one_scan(scans, request, dispatcher, concurrency, quiet=args.quiet)
            print(json.dumps(results_document(summary), indent=2) if args.json else render_table(summary), flush=True)
            if not args.every or (args.cycles is not None and cycle >= args.cycles):
                return 0
            as_of = next_close(as_of, args.every)
            await _sleep_until(as_of)
    finally:
        if pool is not None:
            pool.close()
        if remote is not None:
            await remote.aclose()


async def _one_scan(scans: Scans, request: ScanRequest, dispatcher: SymbolDispatcher, concurrency: int, *, quiet: bool) -> ScanSummary:
    bar = tqdm(total=0, unit="sym", desc=request.scan_id, file=sys.stderr, disable=quiet, dynamic_ncols=True, mininterval=0.5)
    tally: dict[str, int] = {}

    def progress(event: dict[str, Any]) -> None:
        if event.get("scan") == "watchlist":
            bar.reset(total=event["symbols"])
        elif event.get("scan") == "symbol":
            decision = event["entry"].get("decision") or event["entry"]["status"]
            tally[decision] = tally.get(decision, 0) + 1
            bar.set_postfix(tally, refresh=False)
            bar.update(1)

    try:
        return await scans.run(request, dispatcher, concurrency=concurrency, on_event=progress)
    finally:
        bar.close()


async def _sleep_until(moment: datetime) -> None:
    delay = (moment - datetime.now(UTC)).total_seconds()
    if delay > 0:
        print(f"next cycle at {moment:%H:%M:%S} UTC (the next close)", file=sys.stderr, flush=True)
        await asyncio.sleep(delay)
