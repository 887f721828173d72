"""The scanner's nodes: resolve the watchlist, decide one symbol per branch, rank what came back."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from langgraph.runtime import Runtime

from state.scan import ScanEntry, ScanRequest, ScanState, ScanSummary, SymbolTask, rank_key
from state.sections import SYMBOL_PATTERN
from tools.scan import ScanServices, top_markets
from tools.timeframes import floor_time

# Set by graphs/scanner.py for `langgraph dev`, whose server cannot build our ScanServices.
studio_services: Callable[[], ScanServices] | None = None


def scan_services(runtime: Runtime[ScanServices]) -> ScanServices:
    if isinstance(runtime.context, ScanServices):
        return runtime.context
    if studio_services is None:
        raise RuntimeError("the scanner graph needs ScanServices as its runtime context")
    return studio_services()


def _normalised(symbols: list[str]) -> tuple[list[str], list[ScanEntry]]:
    """Well-formed symbols once each, in the given order; malformed ones become invalid entries, not errors."""
    seen: set[str] = set()
    valid: list[str] = []
    invalid: list[ScanEntry] = []
    for raw in symbols:
        symbol = raw.strip().upper()
        if not SYMBOL_PATTERN.match(symbol):
            invalid.append(ScanEntry(symbol=raw.strip()[:40] or "(empty)", status="invalid", reason=f"malformed symbol {raw!r}: expected BASE/QUOTE such as BTC/USDT"))
        elif symbol not in seen:
            seen.add(symbol)
            valid.append(symbol)
    return valid, invalid


async def resolve_watchlist(state: ScanState, runtime: Runtime[ScanServices]) -> dict[str, Any]:
    # A TypedDict state validates nothing: Studio's JSON input arrives as a dict. Validated here, once, and
    # handed on as the model, so a malformed scan fails at its first node with pydantic's reasons.
    request = ScanRequest.model_validate(state["request"])
    services = scan_services(runtime)
    # One clock for the whole scan: every symbol is decided at the same moment, and a replay sees it again.
    # Files decide at each file's newest candle instead (None: each run takes its own clock).
    files = request.source == "files" or (request.source is None and (request.data_dir or services.settings.source == "files"))
    as_of = request.as_of or (None if files else floor_time(datetime.now(UTC), "1m"))
    if request.symbols is not None:
        watchlist, invalid = _normalised(request.symbols)
    else:
        listed = await services.markets(request).markets()
        watchlist = top_markets(listed, top=request.top or 0, quote=request.quote, min_quote_volume=request.min_quote_volume)
        invalid = []
    runtime.stream_writer({"scan": "watchlist", "symbols": len(watchlist), "invalid": len(invalid)})
    return {"request": request, "as_of": as_of, "watchlist": watchlist, "results": invalid}


async def scan_symbol(task: SymbolTask, runtime: Runtime[ScanServices]) -> dict[str, Any]:
    """One symbol's lifecycle, unless the governor halted: then nothing more is dispatched."""
    services = scan_services(runtime)
    symbol = task["symbol"]
    started = time.perf_counter()
    governor = await services.ledger.governor()
    if governor.halted:
        entry = ScanEntry(symbol=symbol, status="skipped", reason=f"not dispatched: trading halted ({governor.reason or 'no reason given'})")
    else:
        try:
            entry = await services.dispatcher.decide(task["request"], symbol, task["as_of"])
        except Exception as error:  # a dispatcher should not raise; if it does, only this symbol fails
            entry = ScanEntry(symbol=symbol, status="failed", reason=f"{type(error).__name__}: {error}"[:500])
        if entry.elapsed_ms is None:
            entry = entry.model_copy(update={"elapsed_ms": (time.perf_counter() - started) * 1000})
    runtime.stream_writer({"scan": "symbol", "entry": entry.model_dump(mode="json")})
    return {"results": [entry]}


async def rank(state: ScanState, runtime: Runtime[ScanServices]) -> dict[str, Any]:
    request: ScanRequest = state["request"]
    results = state.get("results") or []
    governor = await scan_services(runtime).ledger.governor()
    counts = Counter(entry.status for entry in results)
    counts.update(f"decision:{entry.decision}" for entry in results if entry.decision)
    summary = ScanSummary(
        scan_id=request.scan_id,
        as_of=state["as_of"],
        ranked=sorted(results, key=rank_key),
        counts=dict(counts),
        halted=governor.halted,
        halt_reason=governor.reason if governor.halted else "",
    )
    return {"summary": summary}
