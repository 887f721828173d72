"""The cockpit page and the views it reads: the desk-wide event stream, the book, the heatmap, a run's chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from sse_starlette import EventSourceResponse

from api.cockpit_views import heatmap, portfolio_report, run_chart
from api.http.events import desk_events, resume_point
from api.http.server import ServerState, server_state

STATIC = Path(__file__).resolve().parents[1] / "cockpit" / "static"
router = APIRouter()


def static_files() -> StaticFiles:
    # Every script, style and the chart library ship with the app: the page needs no network.
    return StaticFiles(directory=STATIC)


@router.get("/", include_in_schema=False)
async def cockpit() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/events", summary="Every run's events (and the governor's) as Server-Sent Events")
async def events(
    after: int | None = Query(None, ge=0),
    last_event_id: str | None = Header(None),
    server: ServerState = Depends(server_state),
) -> EventSourceResponse:
    start = resume_point(after, last_event_id)
    return EventSourceResponse(desk_events(server, start), ping=server.settings.sse_heartbeat_seconds)


@router.get("/portfolio", summary="Equity, drawdowns, heat and exposure against their limits; the governor; positions")
async def portfolio(server: ServerState = Depends(server_state)) -> dict[str, Any]:
    return (await portfolio_report(server.runs)).model_dump(mode="json")


@router.get("/heatmap", summary="Latest signals of each symbol's last run: strategy x symbol signed confidence")
async def signal_heatmap(server: ServerState = Depends(server_state)) -> dict[str, Any]:
    return (await heatmap(server.runs)).model_dump(mode="json")


@router.get("/runs/{thread_id}/chart", summary="The run's decision-timeframe candles with its levels and order")
async def chart(thread_id: str, server: ServerState = Depends(server_state)) -> dict[str, Any]:
    return (await run_chart(server.runs, thread_id)).model_dump(mode="json")
