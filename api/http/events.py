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
from typing import Any

from sse_starlette import ServerSentEvent

from api.http.server import ServerState
from tools.audit_log import AuditRow

# The product's event vocabulary passes through as is; the rest get a lower-case name of what they are.
RENAMED = {"STATE_CHANGE": "node_update", "PROGRESS": "progress", "INTERRUPT": "interrupt", "DECISION": "decision"}
FINISHED = ("done", "failed")
# Streams of runs driven by another process (the CLI) have no in-process wake-up: they look this often.
POLL_SECONDS = 1.0
PAGE = 500


def event_name(row: AuditRow) -> str:
    return RENAMED.get(row.event, row.event)


def event_body(row: AuditRow) -> dict[str, Any]:
    return {
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


def to_sse(row: AuditRow) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(event_body(row), default=str), event=event_name(row), id=str(row.seq))


async def run_events(server: ServerState, thread_id: str, after: int) -> AsyncIterator[ServerSentEvent]:
    """Every row after `after`, then new ones as they are written, until the run has finished and all is sent.

    A paused run keeps its stream open: the approval, the execution and the
    decision that follow are events of the same run.
    """
    wake = server.wakeups.subscribe(thread_id)
    server.metrics.sse_clients.inc()
    try:
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
            try:
                await asyncio.wait_for(wake.wait(), timeout=POLL_SECONDS)
            except TimeoutError:
                pass
    finally:
        server.wakeups.unsubscribe(thread_id, wake)
        server.metrics.sse_clients.dec()
