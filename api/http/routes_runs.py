"""Runs: start them, list them, read their state, stream their events, answer their approvals."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from api.http.auth import operator
from api.http.bodies import Resume, StartRuns
from api.http.events import resume_point, run_events
from api.http.server import ServerState, server_state
from api.runs import RunNotFound, RunOutcome, make_request, new_thread_id
from state.scan import RUN_OPTIONS, ScanEntry, ScanRequest
from state.sections import RunRequest
from tools.scan import scan_thread_id
from tools.market_data import MarketDataError

router = APIRouter()
# How long an answer waits for a driver that is still recording the pause it answers.
BUSY_WAIT_SECONDS = 5.0


def accepted(server: ServerState, thread_id: str, symbol: str) -> dict[str, Any]:
    return {"thread_id": thread_id, "symbol": symbol, "status": "queued", "events": f"/runs/{thread_id}/events", "run": f"/runs/{thread_id}"}


async def respond(server: ServerState, started: list[tuple[dict[str, Any], Any]], wait: bool, scan_id: str | None = None) -> JSONResponse:
    """202 with where to follow the runs, or, with `wait`, 200 with their outcomes once they pause or finish."""
    scan = {"scan_id": scan_id, "scan": f"/scans/{scan_id}"} if scan_id else {}
    if not wait:
        return JSONResponse({**scan, "runs": [body for body, _ in started]}, status_code=202)
    outcomes = [await server.manager.wait(task) for _, task in started]
    return JSONResponse({**scan, "runs": [outcome.document() for outcome in outcomes]}, status_code=200)


@router.post("/runs", status_code=202, summary="Start a run for one symbol or a list")
async def start_runs(
    body: StartRuns, wait: bool = False, server: ServerState = Depends(server_state), by: str | None = Depends(operator)
) -> JSONResponse:
    settings = server.settings
    # Every request is validated before any run starts: one malformed symbol refuses the whole list.
    requests = [make_request(settings, name, **body.overrides()) for name in body.names]
    if any(r.broker == "live" for r in requests) and not settings.live_trading:
        raise HTTPException(403, "live trading is off on this server (AITRADER_LIVE_TRADING is not true)")
    duplicates = {r.symbol for r in requests if sum(q.symbol == r.symbol for q in requests) > 1}
    if duplicates:
        raise HTTPException(422, f"symbols named twice: {', '.join(sorted(duplicates))}")
    for request in requests:
        try:
            await server.runs.hub.clock_for(request)  # opens the market source: an unknown scenario or data directory fails here
        except MarketDataError as error:
            if request.source != "files":
                raise  # an exchange that cannot be reached is the server's problem (502), not the caller's
            raise HTTPException(422, str(error)) from error
    if body.thread_id and await server.storage.ledger.run(body.thread_id):
        raise HTTPException(409, f"thread {body.thread_id} already exists; resume, replay or fork it instead")
    if body.symbols is not None:
        return await start_scan(server, body, requests, wait)
    started = []
    for request in requests:
        thread_id = body.thread_id or new_thread_id(request.symbol)
        server.manager.claim(thread_id)
        await server.storage.ledger.run_started(thread_id, request.symbol, status="queued")
        server.metrics.runs_started.inc()
        task = server.manager.spawn(thread_id, _starter(server, request, thread_id))
        started.append((accepted(server, thread_id, request.symbol), task))
    return await respond(server, started, wait)


async def start_scan(server: ServerState, body: StartRuns, requests: list[RunRequest], wait: bool) -> JSONResponse:
    """A list goes through the scanner graph, as `aitrader scan` does: bounded concurrency, halt, ranking."""
    if body.operator_signals or body.broker == "live":
        raise HTTPException(422, "operator_signals and the live broker are for single runs; a list is scanned on paper")
    scan = ScanRequest(scan_id=f"scan-{uuid.uuid4().hex[:12]}", symbols=[r.symbol for r in requests], **scan_options(body))
    landed: dict[str, asyncio.Future[ScanEntry]] = {r.symbol: asyncio.get_running_loop().create_future() for r in requests}
    for symbol in landed:
        server.manager.claim(scan_thread_id(scan.scan_id, symbol))
    for symbol in landed:
        await server.storage.ledger.run_started(scan_thread_id(scan.scan_id, symbol), symbol, status="queued")
        server.metrics.runs_started.inc()

    def heard(event: dict[str, Any]) -> None:
        entry = event.get("entry")
        if event.get("scan") == "symbol" and entry and entry["symbol"] in landed and not landed[entry["symbol"]].done():
            landed[entry["symbol"]].set_result(ScanEntry.model_validate(entry))

    async def scanning() -> None:
        try:
            await server.scans.run(scan, concurrency=server.settings.api_max_concurrent_runs, on_event=heard)
        except BaseException as error:
            for symbol, future in landed.items():
                if not future.done():
                    await mark_unstarted(server, scan_thread_id(scan.scan_id, symbol), error)
                    future.set_exception(RuntimeError(f"the scan stopped before {symbol} was decided: {type(error).__name__} {error}"))
            raise

    scan_task = asyncio.create_task(scanning(), name=f"scan:{scan.scan_id}")
    server.background.add(scan_task)
    scan_task.add_done_callback(server.background.discard)

    def follower(symbol: str) -> Any:
        async def follow() -> RunOutcome:
            thread_id = scan_thread_id(scan.scan_id, symbol)
            try:
                entry = await landed[symbol]
                if entry.status == "skipped":  # halted before its turn: nothing ran
                    raise RuntimeError(entry.reason)
                return await server.runs.outcome(thread_id)
            except BaseException as error:
                await mark_unstarted(server, thread_id, error)
                raise

        return follow

    started = []
    for symbol in landed:
        thread_id = scan_thread_id(scan.scan_id, symbol)
        task = server.manager.spawn(thread_id, follower(symbol))
        started.append(({**accepted(server, thread_id, symbol), "scan_id": scan.scan_id}, task))
    return await respond(server, started, wait, scan_id=scan.scan_id)


def scan_options(body: StartRuns) -> dict[str, Any]:
    return body.model_dump(include=set(RUN_OPTIONS), exclude_none=True)


@router.get("/scans/{scan_id}", summary="A scan's ranked results (once it has finished)")
async def get_scan(scan_id: str, server: ServerState = Depends(server_state)) -> dict[str, Any]:
    summary = await server.scans.summary(scan_id)
    if summary is None:
        raise HTTPException(404, f"no finished scan {scan_id!r}")
    return summary.model_dump(mode="json")


def _starter(server: ServerState, request: RunRequest, thread_id: str) -> Any:
    async def start() -> RunOutcome:
        try:
            async with server.run_slots:
                return await server.runs.start(request, thread_id=thread_id)
        except BaseException as error:
            await mark_unstarted(server, thread_id, error)
            raise

    return start


async def mark_unstarted(server: ServerState, thread_id: str, error: BaseException) -> None:
    """A run that failed, or was cancelled by a shutdown, before its first node would otherwise stay
    "queued" for ever. (Once started, the drive records its own failure.)"""
    if (await server.storage.ledger.run(thread_id) or {}).get("status") == "queued":
        reason = "the server stopped before this run started; start it again" if isinstance(error, asyncio.CancelledError) else f"{type(error).__name__}: {error}"
        await server.storage.ledger.run_status(thread_id, "failed", None, reason[:500])


@router.get("/runs", summary="Runs, newest first")
async def list_runs(
    status: str | None = None, symbol: str | None = None, limit: int = Query(100, ge=1, le=1000), server: ServerState = Depends(server_state)
) -> dict[str, Any]:
    return {"runs": await server.storage.ledger.runs(status=status, symbol=symbol.upper() if symbol else None, limit=limit)}


@router.get("/runs/{thread_id}", summary="A run's status and current state")
async def get_run(thread_id: str, server: ServerState = Depends(server_state)) -> dict[str, Any]:
    index = await server.storage.ledger.run(thread_id)
    try:
        document = (await server.runs.outcome(thread_id)).document()
    except RunNotFound:
        if index is None:
            raise
        document = {"thread_id": thread_id, "decision": None, "pending_interrupt": None, "state": {}}  # queued, nothing ran yet
    return {**document, "run": index, "driving": server.manager.busy(thread_id)}


@router.get("/runs/{thread_id}/events", summary="The run's events as Server-Sent Events")
async def stream_events(
    thread_id: str,
    after: int | None = Query(None, ge=0, description="Send events after this id (as `Last-Event-ID` does)."),
    last_event_id: str | None = Header(None),
    server: ServerState = Depends(server_state),
) -> EventSourceResponse:
    if await server.storage.ledger.run(thread_id) is None:
        raise RunNotFound(f"no run with thread id {thread_id!r}")
    start = resume_point(after, last_event_id) or 0
    return EventSourceResponse(run_events(server, thread_id, start), ping=server.settings.sse_heartbeat_seconds)


@router.get("/approvals", summary="Runs waiting at the approval interrupt, with the proposed order and evidence")
async def approvals(server: ServerState = Depends(server_state)) -> dict[str, Any]:
    return {"approvals": await server.runs.pending_approvals()}


@router.post("/runs/{thread_id}/resume", summary="Approve, reject or modify a paused run")
async def resume_run(
    thread_id: str, body: Resume, wait: bool = False, server: ServerState = Depends(server_state), by: str | None = Depends(operator)
) -> JSONResponse:
    response = body.response(by)
    await server.manager.claim_when_free(thread_id, BUSY_WAIT_SECONDS)
    try:
        current = await server.runs.waiting(thread_id, body.interrupt_id)
    except BaseException:
        server.manager.release(thread_id)
        raise
    interrupt_id = current.pending.interrupt_id
    task = server.manager.spawn(thread_id, lambda: server.runs.resume(thread_id, response, interrupt_id=interrupt_id))
    symbol = str(current.values["request"].symbol)
    return await respond(server, [({**accepted(server, thread_id, symbol), "status": "resuming", "answer": response.model_dump()}, task)], wait)
