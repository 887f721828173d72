"""A real uvicorn server on loopback for the API tests, and a small SSE reader.

The app runs in the test's own event loop under uvicorn, so requests cross a
real socket and SSE streams really stream (httpx's ASGI transport buffers a
whole response, which would hide exactly what these tests check).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from api.http.app import create_app
from api.http.server import ServerState
from state import Settings


@dataclass
class Served:
    app: FastAPI
    client: httpx.AsyncClient
    base_url: str

    @property
    def server(self) -> ServerState:
        return self.app.state.server


@asynccontextmanager
async def serving(settings: Settings, *, token: str | None = None) -> AsyncIterator[Served]:
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises what stopped the server from starting
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=60, headers=headers) as client:
            yield Served(app, client, base_url)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=30)


@dataclass
class SseEvent:
    event: str
    data: Any
    id: str | None = None


@dataclass
class SseReader:
    """Parses a text/event-stream: comments (heartbeats) are counted, events collected."""

    events: list[SseEvent] = field(default_factory=list)
    comments: int = 0
    _lines: AsyncIterator[str] | None = None

    async def read(self, response: httpx.Response, *, until: set[str], limit: int = 10_000) -> list[SseEvent]:
        """Events up to the first of `until` (or `limit`); a later call carries on where this one stopped."""
        fields: dict[str, str] = {}
        if self._lines is None:
            self._lines = response.aiter_lines()
        async for line in self._lines:
            if line.startswith(":"):
                self.comments += 1
                continue
            if line == "":
                if "data" in fields or "event" in fields:
                    raw = fields.get("data", "")
                    event = SseEvent(event=fields.get("event", "message"), data=json.loads(raw) if raw else None, id=fields.get("id"))
                    self.events.append(event)
                    if event.event in until or len(self.events) >= limit:
                        return self.events
                fields = {}
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            fields[name] = fields[name] + "\n" + value if name == "data" and name in fields else value
        return self.events


async def read_events(
    client: httpx.AsyncClient, thread_id: str, *, until: set[str], headers: dict[str, str] | None = None, timeout: float = 120, limit: int = 10_000
) -> list[SseEvent]:
    reader = SseReader()
    async with client.stream("GET", f"/runs/{thread_id}/events", headers=headers or {}, timeout=timeout) as response:
        assert response.status_code == 200, await response.aread()
        return await reader.read(response, until=until, limit=limit)
