"""Forensics: a run's checkpoints, the state at each with what changed, replays, forks and injected signals."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import JSONResponse

from api.forensics import check_fork, checkpoint_detail, checkpoint_snapshot, fork
from api.http.auth import operator
from api.http.bodies import InjectSignal, Replay
from api.http.routes_runs import BUSY_WAIT_SECONDS, accepted, respond
from api.http.server import ServerState, server_state
from api.runs import RunNotFound, new_thread_id
from state.sections import OperatorSignal, RunRequest

router = APIRouter()
# The step that schedules the strategy fan-out: an injected signal joins the run there.
FAN_OUT_NODES = {"strategy", "operator_signal"}


@router.get("/runs/{thread_id}/history", summary="The run's checkpoints, newest first")
async def history(thread_id: str, limit: int = Query(200, ge=1, le=2000), server: ServerState = Depends(server_state)) -> dict[str, Any]:
    return {"thread_id": thread_id, "checkpoints": [info.model_dump() for info in await server.runs.history(thread_id, limit=limit)]}


@router.get("/runs/{thread_id}/checkpoints/{checkpoint_id}", summary="The state at one checkpoint and what its step changed")
async def checkpoint(thread_id: str, checkpoint_id: str, server: ServerState = Depends(server_state)) -> dict[str, Any]:
    return (await checkpoint_detail(server.runs, thread_id, checkpoint_id)).model_dump(mode="json")


@router.post("/runs/{thread_id}/replay", summary="Re-run from a checkpoint, or fork it into a new thread with changes")
async def replay(
    thread_id: str, body: Replay, wait: bool = False, server: ServerState = Depends(server_state), by: str | None = Depends(operator)
) -> JSONResponse:
    symbol = await _symbol(server, thread_id)
    if not body.fork:
        await checkpoint_snapshot(server.runs, thread_id, body.checkpoint_id)
        await server.manager.claim_when_free(thread_id, BUSY_WAIT_SECONDS)
        task = server.manager.spawn(thread_id, lambda: server.runs.replay(thread_id, body.checkpoint_id))
        return await respond(server, [({**accepted(server, thread_id, symbol), "status": "replaying"}, task)], wait)
    await check_fork(server.runs, thread_id, body.checkpoint_id, body.request, body.settings)
    fork_id = await _claim_fork(server, thread_id, symbol)
    task = server.manager.spawn(
        fork_id,
        lambda: fork(
            server.runs, thread_id, body.checkpoint_id,
            request_overrides=body.request, settings_overrides=body.settings, approval=body.approval, fork_thread_id=fork_id,
        ),
    )
    return await respond(server, [({**accepted(server, fork_id, symbol), "forked_from": {"thread_id": thread_id, "checkpoint_id": body.checkpoint_id}}, task)], wait)


@router.post("/runs/{thread_id}/signals", summary="Inject an operator signal: the run forks before its strategies with it")
async def inject_signal(
    thread_id: str, body: InjectSignal, wait: bool = False, server: ServerState = Depends(server_state), by: str | None = Depends(operator)
) -> JSONResponse:
    symbol = await _symbol(server, thread_id)
    fan_out = next((info for info in await server.runs.history(thread_id) if FAN_OUT_NODES & set(info.next)), None)
    if fan_out is None:
        raise HTTPException(409, f"run {thread_id} stopped before its strategies ran; start a new run with `operator_signals` instead")
    original = RunRequest.model_validate((await server.runs.outcome(thread_id)).values["request"])
    signal = OperatorSignal.model_validate({**body.model_dump(exclude={"approval_mode"}), "by": by or body.by})
    overrides: dict[str, Any] = {"operator_signals": [*original.operator_signals, signal]}
    if body.approval_mode:
        overrides["approval_mode"] = body.approval_mode
    fork_id = await _claim_fork(server, thread_id, symbol)
    task = server.manager.spawn(
        fork_id, lambda: fork(server.runs, thread_id, fan_out.checkpoint_id, request_overrides=overrides, fork_thread_id=fork_id)
    )
    body_out = {**accepted(server, fork_id, symbol), "forked_from": {"thread_id": thread_id, "checkpoint_id": fan_out.checkpoint_id}}
    return await respond(server, [(body_out, task)], wait)


async def _claim_fork(server: ServerState, thread_id: str, symbol: str) -> str:
    fork_id = new_thread_id(symbol)
    server.manager.claim(fork_id)
    await server.storage.ledger.run_started(fork_id, symbol, thread_id, status="queued")
    return fork_id


async def _symbol(server: ServerState, thread_id: str) -> str:
    index = await server.storage.ledger.run(thread_id)
    if index is None:
        raise RunNotFound(f"no run with thread id {thread_id!r}")
    return str(index["symbol"])
