"""Scanning: one symbol decided exactly once per scan, and the scanner graph driven over a watchlist.

Every symbol of a scan runs in two passes on its own thread:

1. **Screen** with `durability="exit"`, stopped ahead of the approval. Most symbols end
   here with a HOLD (no consensus, or verification held) or a REJECT (risk): their thread
   keeps one checkpoint, the final state (every section, the decision, the audit events),
   at a fraction of the cost of per-step checkpoints.
2. **Commit**, only for a trade proposal (risk sized an order): the screen's thread is
   deleted and the lifecycle runs again from its input with per-step checkpoints
   (`durability="async"`), so every symbol that ends with a trade proposal has a fully
   replayable history. The analysis and verification nodes hand their writes from the
   first pass to the second through LangGraph's node cache (tools/screen_cache.py); risk
   reads the book again, just before the approval and the order.

Deciding is idempotent: a symbol delivered again (a worker died, a message was
redelivered) finds its thread and returns the decision already made, continues a
commit pass from its last checkpoint, or re-screens a screen that never committed.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from api.runs import Lifecycles, make_request
from graphs.scanner import SCAN_RECURSION_LIMIT, build_scanner
from state.scan import ScanEntry, ScanRequest, ScanSummary
from tools.market_data import MarketDataSource
from tools.scan import ScanServices, SymbolDispatcher, entry_from_values, scan_thread_id

SCREEN_STOP = ["approval"]  # a screen that gets here has a trade proposal
WORKER = f"{os.getpid()}@{socket.gethostname()}"


async def decide_symbol(runs: Lifecycles, scan: ScanRequest, symbol: str, as_of: datetime | None) -> ScanEntry:
    """The symbol's entry in this scan: decided now, or found decided before. Never raises for the symbol."""
    thread_id = scan_thread_id(scan.scan_id, symbol)
    started = time.perf_counter()
    try:
        request = make_request(runs.settings, symbol, **{**scan.run_options(), "as_of": as_of})
        metadata = {"scan_id": scan.scan_id, "worker": WORKER}
        # The run row goes in before any checkpoint: a thread that had none is new, and needs no look back.
        # The kill switch is read again, not trusted from the dispatch (the symbol may have waited in a
        # queue meanwhile), alongside the claim: one round trip's wait for both.
        ledger = runs.storage.ledger
        governor, claimed = await asyncio.gather(ledger.governor(), ledger.claim_run(thread_id, symbol))
        if governor.halted and (skipped := await _skip_unstarted(runs, thread_id, symbol, governor.reason, claimed)) is not None:
            return skipped
        if not claimed and (found := await _pick_up(runs, thread_id, symbol, metadata, started)) is not None:
            return found
        with runs.screen_cache.scope():  # the commit pass reuses the screen's analysis and verification
            screen = {**metadata, "scan_phase": "screen"}
            outcome = await runs.start(request, thread_id=thread_id, durability="exit", metadata=screen, stop_before=SCREEN_STOP, claimed=claimed)
            if outcome.decision is None and outcome.pending is None:
                await runs.storage.checkpointer.adelete_thread(thread_id)
                request = outcome.values["request"]  # with the clock the screen fixed
                outcome = await runs.start(
                    request, thread_id=thread_id, durability="async", metadata={**metadata, "scan_phase": "commit"}, batch_events=True
                )
        return _entry(symbol, thread_id, outcome.values, outcome.pending is not None, started)
    except asyncio.CancelledError:
        # Stopped wherever it was (even between the run's row and its first node): say so, then stop.
        await runs.storage.ledger.run_status(thread_id, "failed", None, "the scan was stopped before this symbol finished; scan it again")
        raise
    except Exception as error:
        await runs.storage.ledger.run_started(thread_id, symbol, status="failed")  # there may be no row yet
        await runs.storage.ledger.run_status(thread_id, "failed", None, f"{type(error).__name__}: {error}"[:500])
        return ScanEntry(symbol=symbol, thread_id=thread_id, status="failed", reason=f"{type(error).__name__}: {error}"[:500], worker=WORKER)


async def _skip_unstarted(runs: Lifecycles, thread_id: str, symbol: str, reason: str, claimed: bool) -> ScanEntry | None:
    """After a halt, a symbol handed to a worker that had not started it never starts: its run row
    says so (a distributed scan's coordinator reads it there). One that started before the halt is
    picked up like any redelivery (None): it reports what it decided, or meets the halt in risk."""
    if not claimed:  # a row from before: "queued" (written ahead by the API, or by a worker stopped mid-run)
        row = await runs.storage.ledger.run(thread_id)  # only the checkpoints tell which
        if row is None or row["status"] not in ("queued", "skipped") or await runs.storage.last_checkpoint_id(thread_id):
            return None
    why = f"not started: trading halted ({reason or 'no reason given'})"
    await runs.storage.ledger.run_status(thread_id, "skipped", None, why)
    return ScanEntry(symbol=symbol, thread_id=thread_id, status="skipped", reason=why, worker=WORKER)


async def _pick_up(runs: Lifecycles, thread_id: str, symbol: str, metadata: dict[str, Any], started: float) -> ScanEntry | None:
    """The entry of a symbol this scan reached before (a redelivery), or None once its thread is clear to screen."""
    previous = await runs.graph.aget_state({"configurable": {"thread_id": thread_id}})
    if previous.values and (not previous.next or previous.interrupts):
        await runs.settle(thread_id)  # decided before; a worker killed right after may have left its record short
        return _entry(symbol, thread_id, previous.values, bool(previous.interrupts), started)
    if previous.values and previous.metadata.get("scan_phase") == "commit":
        # A commit pass cut short: carry on where it stopped (its orders' ids are stable across the retry),
        # after writing the events of the steps it did (its rows go in at its end).
        await runs.backfill_events(thread_id)
        outcome = await runs.continue_run(thread_id, metadata={**metadata, "scan_phase": "commit"})
        return _entry(symbol, thread_id, outcome.values, outcome.pending is not None, started)
    if previous.values:
        await runs.storage.checkpointer.adelete_thread(thread_id)  # a screen that never committed
    return None


def _entry(symbol: str, thread_id: str, values: dict[str, Any], paused: bool, started: float) -> ScanEntry:
    return entry_from_values(symbol, thread_id, values, paused=paused, elapsed_ms=(time.perf_counter() - started) * 1000, worker=WORKER)


class InProcessDispatcher:
    """Decides symbols on this process's event loop (one core): the default for small scans and the API."""

    def __init__(self, runs: Lifecycles) -> None:
        self.runs = runs

    async def decide(self, request: ScanRequest, symbol: str, as_of: datetime | None) -> ScanEntry:
        return await decide_symbol(self.runs, request, symbol, as_of)


class Scans:
    """Drives the scanner graph. The scan's own thread (id = scan id) keeps the entries and the ranked summary."""

    def __init__(self, runs: Lifecycles) -> None:
        self.runs = runs
        self.graph = build_scanner(runs.storage.checkpointer)

    def services(self, dispatcher: SymbolDispatcher) -> ScanServices:
        return ScanServices(
            settings=self.runs.settings,
            dispatcher=dispatcher,
            ledger=self.runs.storage.ledger,
            markets=self.markets_for,
        )

    def markets_for(self, request: ScanRequest) -> MarketDataSource:
        # The source is chosen by the run options alone; any well-formed symbol builds the request that names it.
        probe = make_request(self.runs.settings, "BTC/USDT", **request.run_options())
        return self.runs.hub.market_source(probe)

    async def run(
        self,
        request: ScanRequest,
        dispatcher: SymbolDispatcher | None = None,
        *,
        concurrency: int = 4,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> ScanSummary:
        """Scan the watchlist; `on_event` hears the watchlist's size and every symbol's entry as it lands."""
        config = {
            "configurable": {"thread_id": request.scan_id},
            "metadata": {"scan_id": request.scan_id},
            "recursion_limit": SCAN_RECURSION_LIMIT,
            "max_concurrency": concurrency,
        }
        context = self.services(dispatcher or InProcessDispatcher(self.runs))
        async for chunk in self.graph.astream({"request": request}, config, context=context, durability="exit", stream_mode="custom"):
            if on_event is not None:
                on_event(chunk)
        return (await self.graph.aget_state(config)).values["summary"]

    async def summary(self, scan_id: str) -> ScanSummary | None:
        values = (await self.graph.aget_state({"configurable": {"thread_id": scan_id}})).values
        return values.get("summary") if values else None
