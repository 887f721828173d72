"""Operations: the governor, the graph's shape, health and metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.http.auth import operator
from api.http.bodies import GovernorResume, Halt
from api.http.server import ServerState, server_state
from tools.governor import Governor

router = APIRouter()
# Who a change is recorded as when the caller named nobody (no `X-Operator`).
ANONYMOUS = "local-api"


def _governor(server: ServerState) -> Governor:
    return Governor(server.storage.ledger, server.storage.audit)


@router.get("/governor", summary="Kill switch, disabled strategies and capital budget")
async def governor_state(server: ServerState = Depends(server_state)) -> dict[str, Any]:
    return (await _governor(server).state()).model_dump(mode="json")


@router.post("/governor/halt", summary="Stop new orders in every run and cancel resting entries")
async def halt(body: Halt, server: ServerState = Depends(server_state), by: str | None = Depends(operator)) -> dict[str, Any]:
    outcome = await _governor(server).halt(body.reason, by or ANONYMOUS, server.runs.hub.brokers())
    return outcome.model_dump(mode="json")


@router.post("/governor/resume", summary="Allow new orders again")
async def resume(body: GovernorResume, server: ServerState = Depends(server_state), by: str | None = Depends(operator)) -> dict[str, Any]:
    return (await _governor(server).resume(by or ANONYMOUS, body.reason)).model_dump(mode="json")


@router.get("/graph", summary="The lifecycle graph: nodes and edges as JSON, or Mermaid")
async def graph(format: str = Query("json", pattern="^(json|mermaid)$"), server: ServerState = Depends(server_state)) -> Response:
    drawable = server.runs.graph.get_graph()
    mermaid = drawable.draw_mermaid()
    if format == "mermaid":
        return PlainTextResponse(mermaid)
    shape = drawable.to_json()
    nodes = [{"id": node["id"]} for node in shape["nodes"]]
    edges = [{"source": e["source"], "target": e["target"], "conditional": bool(e.get("conditional"))} for e in shape["edges"]]
    return JSONResponse({"graph": "trade_lifecycle", "nodes": nodes, "edges": edges, "mermaid": mermaid})


@router.get("/health", summary="Liveness and database reachability")
async def health(server: ServerState = Depends(server_state)) -> JSONResponse:
    db = server.storage.ledger.db
    try:
        await db.fetch("SELECT 1 AS ok")
    except Exception as error:  # the answer to a health check is the error, not a 500
        return JSONResponse({"status": "degraded", "database": db.dialect, "error": f"{type(error).__name__}: {error}"[:300]}, status_code=503)
    return JSONResponse({"status": "ok", "database": db.dialect, "runs_in_flight": server.manager.running})


@router.get("/metrics", summary="Prometheus metrics")
# Under `langgraph dev` the server's own /metrics comes first; ours stay reachable here.
@router.get("/aitrader/metrics", summary="Prometheus metrics (the path that works under langgraph dev too)")
async def metrics(server: ServerState = Depends(server_state)) -> Response:
    # Gauges that live in the database are read at scrape time, so they are right across processes.
    server.metrics.pending_approvals.set(len(await server.storage.ledger.pending()))
    server.metrics.open_positions.set(len(await server.storage.ledger.live_positions()))
    return Response(server.metrics.render(), media_type=CONTENT_TYPE_LATEST)
