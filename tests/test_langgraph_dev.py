"""`langgraph dev` boots on our langgraph.json and serves both the lifecycle graph and our FastAPI app.

What this proves, against a real `langgraph dev` process (the in-memory server of
langgraph-cli[inmem]) started from this venv with the repository as its working
directory, offline and without a browser:

- the server starts and the custom app's lifespan completes (uvicorn answers only
  after every lifespan has entered, so an answer means our storage is open);
- the graph `trade_lifecycle` that langgraph.json names is served: an assistant for
  it exists and its drawn graph has the `approval` and `execute` nodes;
- langgraph.json's `http.app` is mounted: our own `GET /health` answers 200 with
  status "ok" on the same port as langgraph's routes;
- a run started through langgraph's own API (as Studio does: JSON input, no runtime
  context) pauses at the approval interrupt and, resumed with
  `Command(resume={"action": "approve", "by": "studio"})`, ends with a decision.

If the `langgraph` executable is not installed next to this interpreter the tests
fail in CI (CI set) and are skipped elsewhere, with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
LANGGRAPH = Path(sys.executable).parent / "langgraph"
BOOT_TIMEOUT = 90.0
RUN_TIMEOUT = 60.0
GRAPH_ID = "trade_lifecycle"
ANNOUNCED = re.compile(r"http://127\.0\.0\.1:(\d+)")
# Variables that would make the server or the graph reach outside this machine.
SCRUBBED_PREFIXES = ("LANGSMITH_", "LANGCHAIN_", "LANGGRAPH_", "AITRADER_")


def _require_langgraph() -> None:
    if LANGGRAPH.exists():
        return
    message = f"`langgraph` is not installed next to {sys.executable} (pip install 'langgraph-cli[inmem]')"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message + " (set CI=true to make this a failure)")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DevServer:
    def __init__(self, process: subprocess.Popen[bytes], log: Path, port: int) -> None:
        self.process = process
        self.log = log
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self, tail: int = 4000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return re.sub(r"\x1b\[[0-9;]*m", "", text)[-tail:]

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"langgraph dev exited with {self.process.returncode} before answering:\n{self.output()}")
            # `langgraph dev` silently moves to another port when the asked one is taken; follow its banner.
            announced = ANNOUNCED.search(self.output(tail=1_000_000))
            if announced:
                self.port = int(announced.group(1))
            try:
                if httpx.get(f"{self.url}/ok", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        pytest.fail(f"langgraph dev did not answer within {BOOT_TIMEOUT:.0f}s:\n{self.output()}")

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        for sig, grace in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.process.pid, sig)  # the group of this one process, which it leads
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    _require_langgraph()
    home = tmp_path_factory.mktemp("langgraph-dev")
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_PREFIXES)}
    env.update(
        AITRADER_HOME=str(home / "aitrader"),
        AITRADER_LLM_ENABLED="false",
        LANGGRAPH_CLI_NO_ANALYTICS="1",  # the CLI's usage ping
        LANGGRAPH_NO_VERSION_CHECK="true",  # the server's look-up of a newer langgraph-api
        LANGSMITH_TRACING="false",
        PYTHONUNBUFFERED="1",
    )
    # The in-memory runtime keeps its state in ./.langgraph_api; remove it afterwards if this test made it.
    scratch = REPO / ".langgraph_api"
    scratch_existed = scratch.exists()
    log = home / "langgraph-dev.log"
    port = _free_port()
    # --allow-blocking: without a runtime context the nodes book on the in-memory ledger, whose
    # SQLite calls are synchronous by design; the dev server's blockbuster would raise on them.
    command = [
        str(LANGGRAPH), "dev", "--no-browser", "--no-reload", "--allow-blocking",
        "--port", str(port), "--host", "127.0.0.1",
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = DevServer(process, log, port)
    try:
        server.wait_until_up()
        yield server
    finally:
        server.stop()
        if not scratch_existed:
            shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="module")
def client(dev_server: DevServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dev_server.url, timeout=RUN_TIMEOUT) as http:
        yield http


def _assistant_id(client: httpx.Client, server: DevServer) -> str:
    found = client.post("/assistants/search", json={"graph_id": GRAPH_ID, "limit": 10})
    assert found.status_code == 200, f"{found.status_code} {found.text}\n{server.output()}"
    assistants = [a for a in found.json() if a["graph_id"] == GRAPH_ID]
    assert assistants, f"no assistant for graph {GRAPH_ID!r}: {found.json()}\n{server.output()}"
    return assistants[0]["assistant_id"]


def test_dev_server_serves_the_graph_and_the_app(dev_server: DevServer, client: httpx.Client) -> None:
    assistant_id = _assistant_id(client, dev_server)
    drawn = client.get(f"/assistants/{assistant_id}/graph")
    assert drawn.status_code == 200, f"{drawn.status_code} {drawn.text}\n{dev_server.output()}"
    nodes = {node["id"] for node in drawn.json()["nodes"]}
    assert {"approval", "execute"} <= nodes, nodes

    health = client.get("/health")
    assert health.status_code == 200, f"GET /health: {health.status_code} {health.text}\n{dev_server.output()}"
    assert health.json()["status"] == "ok", health.json()


def test_a_studio_run_pauses_for_approval_and_resumes_to_a_decision(dev_server: DevServer, client: httpx.Client) -> None:
    request = {
        "symbol": "BTC/USDT",
        "source": "builtin",
        "scenario": "uptrend",
        "timeframes": ["15m", "1h", "4h"],
        "decision_timeframe": "1h",
        "approval_mode": "always",
        "as_of": "2026-11-20T13:37:00+00:00",  # a fixed clock: the uptrend scenario proposes a long there
    }
    thread = client.post("/threads", json={})
    assert thread.status_code == 200, thread.text
    thread_id = thread.json()["thread_id"]

    paused = client.post(f"/threads/{thread_id}/runs/wait", json={"assistant_id": GRAPH_ID, "input": {"request": request}})
    assert paused.status_code == 200, f"{paused.status_code} {paused.text}\n{dev_server.output()}"
    state = paused.json()
    assert "__error__" not in state, f"{state['__error__']}\n{dev_server.output()}"
    assert state.get("decision") is None, state.get("decision")
    interrupts = state.get("__interrupt__") or []
    assert len(interrupts) == 1, f"expected the approval interrupt, got {sorted(state)}"
    proposal = interrupts[0]["value"]
    assert proposal["symbol"] == "BTC/USDT" and proposal["quantity"] > 0, proposal

    resumed = client.post(
        f"/threads/{thread_id}/runs/wait",
        json={"assistant_id": GRAPH_ID, "command": {"resume": {"action": "approve", "by": "studio"}}},
    )
    assert resumed.status_code == 200, f"{resumed.status_code} {resumed.text}\n{dev_server.output()}"
    final = resumed.json()
    assert "__error__" not in final, f"{final['__error__']}\n{dev_server.output()}"
    assert not final.get("__interrupt__"), final.get("__interrupt__")
    assert final["approval"]["status"] == "approved" and final["approval"]["by"] == "studio", final["approval"]
    assert final["decision"]["action"] == "BUY" and final["decision"]["stage"] == "execute", final["decision"]


def test_studio_runs_the_scanner_over_a_watchlist(dev_server: DevServer, client: httpx.Client) -> None:
    """The `scanner` graph of langgraph.json, run as Studio runs it: JSON input, the dev server's own checkpointer."""
    thread_id = client.post("/threads", json={}).json()["thread_id"]
    request = {"scan_id": "studio-scan", "symbols": ["BTC/USDT", "ETH/USDT", "not a symbol"], "scenario": "range", "as_of": "2026-11-20T13:37:00+00:00"}
    done = client.post(f"/threads/{thread_id}/runs/wait", json={"assistant_id": "scanner", "input": {"request": request}})
    assert done.status_code == 200, f"{done.status_code} {done.text}\n{dev_server.output()}"
    state = done.json()
    assert "__error__" not in state, f"{state['__error__']}\n{dev_server.output()}"
    ranked = {entry["symbol"]: entry for entry in state["summary"]["ranked"]}
    assert set(ranked) == {"BTC/USDT", "ETH/USDT", "not a symbol"}
    assert ranked["not a symbol"]["status"] == "invalid"
    assert {ranked[s]["decision"] for s in ("BTC/USDT", "ETH/USDT")} == {"HOLD"}
