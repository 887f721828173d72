"""`aitrader serve`: the HTTP API under uvicorn, on the configured storage."""

from __future__ import annotations

import argparse
import sys

from api.http.auth import is_loopback
from state import Settings

LOOPBACK = "127.0.0.1"


def add_parser(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="serve the REST + SSE API (and the cockpit page)")
    serve.add_argument("--host", help="address to bind (default from settings: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default from settings: 8000)")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def bind_address(settings: Settings, host: str | None) -> tuple[str, str | None]:
    """The address to bind, and a warning when the asked-for one was refused."""
    wanted = host or settings.api_host
    if settings.api_token is None and not is_loopback(wanted):
        return LOOPBACK, f"no API token configured (AITRADER_API_TOKEN): binding {LOOPBACK} instead of {wanted}"
    return wanted, None


def serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from api.http.app import create_app

    host, warning = bind_address(settings, args.host)
    if warning:
        print(f"aitrader: {warning}", file=sys.stderr)
    port = args.port or settings.api_port
    storage = "PostgreSQL" if settings.database_url else f"SQLite at {settings.sqlite_path}"
    print(f"aitrader: serving http://{host}:{port} on {storage}; API docs at /docs", file=sys.stderr)
    uvicorn.run(create_app(settings), host=host, port=port, log_level=args.log_level)
    return 0
