"""The HTTP API: `create_app()` for `aitrader serve`, tests and the module-level `app` that langgraph.json mounts.

The app opens the configured storage in its lifespan (Postgres, or the
embedded SQLite file), drives runs in background tasks, streams their audit
trail as SSE and expires stale approvals on a timer. Every error leaves as
JSON with a message and the right status.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from api.http import routes_cockpit, routes_forensics, routes_ops, routes_runs
from api.http.manager import ThreadBusy
from api.http.server import ServerState
from api.runs import Lifecycles, NotPending, RunNotFound
from state import Settings
from tools.brokers.credentials import LiveTradingRefused
from tools.market_data import MarketDataError
from tools.notify import Notifier
from tools.storage import StorageUnavailable, open_storage

log = logging.getLogger(__name__)


def _messages(errors: list[dict]) -> str:
    parts = []
    for error in errors:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _error(status: int, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"detail": message, **extra}, status_code=status)


def add_error_handlers(app: FastAPI) -> None:
    simple: list[tuple[type[Exception], int]] = [
        (RunNotFound, 404),
        (NotPending, 409),
        (ThreadBusy, 409),
        (LiveTradingRefused, 403),
        (ValueError, 422),
        (MarketDataError, 502),
        (StorageUnavailable, 503),
    ]
    for kind, status in simple:
        app.add_exception_handler(kind, lambda _request, error, status=status: _error(status, str(error)))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in error.errors()]
        return _error(422, f"invalid request: {_messages(errors)}", errors=errors)

    @app.exception_handler(ValidationError)
    async def invalid_value(_request: Request, error: ValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in error.errors()]
        return _error(422, f"invalid input: {_messages(errors)}", errors=errors)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, f"internal error ({type(error).__name__}); the server log has the details")


async def sweep_expired_approvals(server: ServerState) -> None:
    """Approvals nobody answered in time are resolved as expired, so they never linger as pending."""
    while True:
        await asyncio.sleep(server.settings.approval_sweep_seconds)
        try:
            for thread_id, interrupt_id in await server.runs.expired():
                if server.manager.busy(thread_id):
                    continue
                server.manager.claim(thread_id)
                server.manager.spawn(thread_id, lambda t=thread_id, i=interrupt_id: server.runs.expire(t, i))
        except Exception:  # the sweeper outlives a database hiccup and tries again next round
            log.exception("approval sweep failed")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API on the given settings, or on the environment's when the server starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resolved = settings or Settings()
        async with open_storage(resolved) as storage:
            runs = Lifecycles(resolved, storage)
            notifier = Notifier.from_settings(resolved)
            notifier.start()
            server = ServerState(resolved, storage, runs, notifier)
            app.state.server = server
            sweeper = asyncio.create_task(sweep_expired_approvals(server), name="approval-sweeper")
            try:
                yield
            finally:
                sweeper.cancel()
                # Scans first, so none dispatches another symbol while the runs are given their grace.
                for task in list(server.background):
                    task.cancel()
                await asyncio.gather(*server.background, return_exceptions=True)
                await server.manager.aclose(resolved.api_shutdown_grace_seconds)
                server.detach()
                await notifier.aclose()
                await runs.hub.aclose()
                app.state.server = None

    app = FastAPI(
        title="aitrader",
        summary="Crypto trade lifecycles as LangGraph state machines: runs, events, approvals, forensics, governor.",
        version="0.1.0",
        lifespan=lifespan,
    )
    add_error_handlers(app)
    for module in (routes_runs, routes_forensics, routes_ops, routes_cockpit):
        app.include_router(module.router)
    app.mount("/static", routes_cockpit.static_files(), name="static")
    return app


# What `langgraph.json` (http.app) and `uvicorn api.http.app:app` serve: settings come from the environment.
app = create_app()
