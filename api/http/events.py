"""A run's events as Server-Sent Events, read from its audit rows.

The audit table is the run's event log: each row's sequence number is the
SSE id, so a client reconnecting with `Last-Event-ID` gets exactly the rows
after it. The stream only reads; the run is driven elsewhere, so a client
that goes away cancels nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sse_starlette import ServerSentEvent

from api.http.server import EVERY_THREAD, ServerState
from tools.audit_log import AuditRow

# The product's event vocabulary passes through as is; the rest get a lower-case name of what they are.
RENAMED = {"STATE_CHANGE": "node_update", "PROGRESS": "progress", "INTERRUPT": "interrupt", "DECISION": "decision"}
FINISHED = ("done", "failed", "skipped")
# Streams of runs driven by another process (the CLI) have no in-process wake-up: they look this often.
POLL_SECONDS = 1.0
PAGE = 500


def event_name(row: AuditRow) -> str:
    return RENAMED.get(row.event, row.event)


# The layer of each node, as DESIGN.md draws them, so the cockpit can filter the trail by layer.
LAYERS = {
    "governor": "L0",
    **dict.fromkeys(("sanity", "market_data", "data_quality"), "L1"),
    **dict.fromkeys(("regime", "structure", "key_levels", "volume", "alt_data"), "L2"),
    **dict.fromkeys(("support_resistance", "fibonacci", "anchored_vwap", "confluence"), "L3"),
    **dict.fromkeys(("strategy", "operator_signal"), "L4"),
    "aggregate": "L5",
    "verify": "L6",
    **dict.fromkeys(("risk", "approval"), "L7"),
    "execute": "L8",
    "audit": "L9",
}


def layer_of(node: str) -> str:
    # Strategy and operator nodes write under their own names (e.g. "strategy:ema_trend@2").
    return LAYERS.get(node, LAYERS.get(node.split(":", 1)[0], "L4" if ":" in node else "-"))


def event_body(row: AuditRow) -> dict[str, Any]:
    return {
        "layer": layer_of(row.node),
        "seq": row.seq,
        "thread_id": row.thread_id,
        "checkpoint_id": row.checkpoint_id,
        "node": row.node,
        "event": row.event,
        "verdict": row.verdict,
        "as_of": row.as_of,
        "recorded_at": row.recorded_at,
        "payload": json.loads(row.payload),
    }


def to_sse(row: AuditRow, **extra: Any) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps({**event_body(row), **extra}, default=str), event=event_name(row), id=str(row.seq))


def resume_point(after: int | None, last_event_id: str | None) -> int | None:
    """Where a (re)connecting stream starts: `?after=` or the standard `Last-Event-ID` header."""
    if after is not None or not last_event_id:
        return after
    if not last_event_id.strip().isdigit():
        raise ValueError(f"Last-Event-ID must be an event id (a number), not {last_event_id!r}")
    return int(last_event_id)


@asynccontextmanager
async def subscribed(server: ServerState, key: str) -> AsyncIterator[asyncio.Event]:
    wake = server.wakeups.subscribe(key)
    server.metrics.sse_clients.inc()
    try:
        yield wake
    finally:
        server.wakeups.unsubscribe(key, wake)
        server.metrics.sse_clients.dec()


async def woken(wake: asyncio.Event) -> None:
    """Until a write wakes the stream, or the poll interval passes (writers in other processes wake nobody)."""
    try:
        await asyncio.wait_for(wake.wait(), timeout=POLL_SECONDS)
    except TimeoutError:
        pass


async def run_events(server: ServerState, thread_id: str, after: int) -> AsyncIterator[ServerSentEvent]:
    """Every row after `after`, then new ones as they are written, until the run has finished and all is sent.

    A paused run keeps its stream open: the approval, the execution and the
    decision that follow are events of the same run.
    """
    async with subscribed(server, thread_id) as wake:
        while True:
            wake.clear()
            # Status before rows: a run marked finished wrote all its rows before that mark.
            run = await server.storage.ledger.run(thread_id)
            finished = run is not None and run["status"] in FINISHED and not server.manager.busy(thread_id)
            while rows := await server.storage.audit.trail(thread_id, after=after, limit=PAGE):
                for row in rows:
                    yield to_sse(row)
                    after = row.seq
            if finished:
                yield ServerSentEvent(event="end", data=json.dumps({"thread_id": thread_id, "status": run["status"], "action": run["action"], "reason": run["reason"], "last_event_id": after}))
                return
            await woken(wake)


async def desk_events(server: ServerState, after: int | None, backlog: int = 300) -> AsyncIterator[ServerSentEvent]:
    """Every run's events (and the governor's) as they are written; without `after`, the last `backlog` first."""
    if after is None:
        after = max(await server.storage.audit.last_seq() - backlog, 0)
    symbols: dict[str, str | None] = {}
    async with subscribed(server, EVERY_THREAD) as wake:
        while True:
            wake.clear()
            while rows := await server.storage.audit.rows_after(after, limit=PAGE):
                for row in rows:
                    if row.thread_id not in symbols:
                        run = await server.storage.ledger.run(row.thread_id)
                        symbols[row.thread_id] = str(run["symbol"]) if run else None
                    yield to_sse(row, symbol=symbols[row.thread_id])
                    after = row.seq
            await woken(wake)
