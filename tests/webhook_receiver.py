"""A local HTTP receiver standing in for webhook endpoints and Telegram's Bot API (no internet here).

It runs in its own thread so a test can hold a request open while the event loop carries on.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class Receiver:
    """Records what it is sent; a test scripts failures (``fail_next``, ``status``) or holds requests (``gate``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hits: list[str] = []  # every request's path, failed ones included
        self.bodies: list[dict[str, Any]] = []  # bodies of the requests answered 200
        self.fail_next, self.fail_status = 0, 503
        self.status = 200
        self.gate: threading.Event | None = None
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    receiver.hits.append(self.path)
                    status = receiver.fail_status if receiver.fail_next > 0 else receiver.status
                    receiver.fail_next = max(receiver.fail_next - 1, 0)
                receiver.arrived.set()
                if receiver.gate is not None:
                    receiver.gate.wait(5)
                if status == 200:
                    with receiver.lock:
                        receiver.bodies.append(body)
                # Error bodies echo the path, as a careless receiver might: the token must still not reach a log.
                reply = json.dumps({"ok": status == 200, "description": f"status {status} for {self.path}"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the server's access log would print the token to stderr

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)  # quick shutdown


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    stub = Receiver()
    stub.thread.start()
    yield stub
    if stub.gate is not None:
        stub.gate.set()
    stub.server.shutdown()
    stub.server.server_close()
