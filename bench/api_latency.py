"""Times the HTTP API end to end: a real `aitrader serve` process, real sockets, real SSE streams.

    .venv/bin/python bench/api_latency.py [--runs 20] [--clients 50,200,500] [--no-postgres] [--json out.json]

Each backend (the embedded SQLite file, and PostgreSQL when a server answers on
127.0.0.1:5432; it gets a scratch database that is dropped afterwards) gets its
own server subprocess with a temporary AITRADER_HOME and the LLM switched off.

Latency: `--runs` sequential runs (approval_mode observe, after 2 uncounted
warm-ups). The clock starts when POST /runs is sent; the client opens the SSE
stream as soon as the 202 arrives. Reported: median and p95 ms to the 202, the
first SSE event, the `decision` event and the `end` event, and the actions the
runs ended with (sizes are kept small and exposure limits wide, so that every
run buys and takes the full path to the paper fill).

Fan-out: for each K in `--clients`, one run (approval_mode always) is left
paused at its approval; K concurrent SSE streams open on it and replay the
backlog up to the `interrupt` event; then the run is approved through the API.
Reported: ms for all K streams to replay, ms from the approve POST until every
stream has the `end` event (max and median over clients), clients that
errored, and the server's RSS (VmRSS) before the streams and with K open.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psycopg

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
AITRADER = Path(sys.executable).with_name("aitrader")
# Every run buys the same symbol and nothing closes over HTTP: small sizes and wide exposure limits keep
# the book from filling, so each run takes the full path to the paper fill (room for ~500 positions).
ROOMY_BOOK = {"AITRADER_RISK_PER_TRADE": "0.0002", **{f"AITRADER_MAX_{k}_EXPOSURE": "1000" for k in ("SYMBOL", "TAG", "DIRECTION")}}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def start_server(home: Path, database_url: str | None) -> tuple[subprocess.Popen[bytes], str]:
    """`aitrader serve` on a free loopback port, once /health answers ok; cwd is the home, so no stray .env applies."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITRADER_")}
    env.update(AITRADER_HOME=str(home), AITRADER_LLM_ENABLED="false", AITRADER_SSE_HEARTBEAT_SECONDS="5", **ROOMY_BOOK)
    if database_url:
        env["AITRADER_DATABASE_URL"] = database_url
    port = free_port()
    with (home / "server.log").open("wb") as log:
        proc = subprocess.Popen([str(AITRADER), "serve", "--port", str(port), "--log-level", "warning"], cwd=home, env=env, stdout=log, stderr=log)
    base_url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
            for _ in range(300):
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited with {proc.returncode}:\n{(home / 'server.log').read_text()[-2000:]}")
                try:
                    if (await client.get("/health")).status_code == 200:
                        return proc, base_url
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("server did not become healthy within 30 s")
    except BaseException:
        stop_server(proc)
        raise


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(event name, data) per SSE event; comments (heartbeats) are skipped."""
    name, data = "message", []
    async for line in response.aiter_lines():
        if line == "":
            if data or name != "message":
                yield name, "\n".join(data)
            name, data = "message", []
        elif not line.startswith(":"):
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "event":
                name = value
            elif key == "data":
                data.append(value)


async def start_run(client: httpx.AsyncClient, args: argparse.Namespace, mode: str) -> str:
    response = await client.post("/runs", json={"symbol": args.symbol, "scenario": args.scenario, "approval_mode": mode})
    if response.status_code != 202:
        raise RuntimeError(f"POST /runs answered {response.status_code}: {response.text[:300]}")
    return response.json()["runs"][0]["thread_id"]


async def timed_run(client: httpx.AsyncClient, args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    thread_id = await start_run(client, args, "observe")
    marks: dict[str, Any] = {"accepted": (time.perf_counter() - started) * 1000}
    async with client.stream("GET", f"/runs/{thread_id}/events") as response:
        response.raise_for_status()
        async for name, data in sse_events(response):
            now = (time.perf_counter() - started) * 1000
            marks.setdefault("first", now)
            if name == "decision":
                marks.setdefault("decision", now)
            if name == "end":
                marks.update(end=now, action=json.loads(data)["action"])
                break
    if "end" not in marks:
        raise RuntimeError(f"stream of {thread_id} closed without an end event")
    return marks


async def latency(base_url: str, args: argparse.Namespace) -> dict[str, Any]:
    samples = []
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        for i in range(args.runs + 2):
            marks = await timed_run(client, args)
            if i >= 2:  # warm-ups: first imports, TA-Lib and connection setup
                samples.append(marks)
    figures = {key: [s[key] for s in samples if key in s] for key in ("accepted", "first", "decision", "end")}
    return {"runs": len(samples), "actions": dict(Counter(str(s["action"]) for s in samples))} | {
        key: {"median_ms": statistics.median(v), "p95_ms": percentile(v, 0.95), "n": len(v)} if v else None for key, v in figures.items()
    }


async def wait_paused(client: httpx.AsyncClient, thread_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = (await client.get(f"/runs/{thread_id}")).json()
        if run["run"]["status"] == "paused" and not run["driving"]:
            return
        if run["run"]["status"] in ("done", "failed"):
            raise RuntimeError(f"run {thread_id} ended {run['run']['status']} ({run['run'].get('reason')}) instead of pausing")
        await asyncio.sleep(0.05)
    raise RuntimeError(f"run {thread_id} did not pause within {timeout} s")


async def fan_out(base_url: str, pid: int, k: int, args: argparse.Namespace) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=k + 10, max_keepalive_connections=k + 10)
    timeout = httpx.Timeout(args.timeout, connect=30, pool=60)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client:
        thread_id = await start_run(client, args, "always")
        await wait_paused(client, thread_id)
        rss_before = rss_mb(pid)
        ready, all_ready = 0, asyncio.Event()

        def arrived() -> None:
            nonlocal ready
            ready += 1
            if ready == k:
                all_ready.set()

        async def follower() -> float:
            replayed = False
            try:
                async with client.stream("GET", f"/runs/{thread_id}/events") as response:
                    response.raise_for_status()
                    async for name, _ in sse_events(response):
                        if name == "interrupt" and not replayed:
                            replayed = True
                            arrived()
                        elif name == "end":
                            return time.perf_counter()
                raise RuntimeError("stream closed before the end event")
            finally:
                if not replayed:
                    arrived()  # an error before the interrupt still counts, so the approval is not held up

        opened = time.perf_counter()
        tasks = [asyncio.create_task(follower()) for _ in range(k)]
        try:
            await asyncio.wait_for(all_ready.wait(), timeout=args.timeout)
            replay_ms = (time.perf_counter() - opened) * 1000
            rss_open = rss_mb(pid)
            approved = time.perf_counter()
            answer = await client.post(f"/runs/{thread_id}/resume", json={"action": "approve"})
            if answer.status_code != 202:
                raise RuntimeError(f"resume answered {answer.status_code}: {answer.text[:300]}")
            await asyncio.wait(tasks, timeout=args.timeout)
        finally:
            for task in tasks:
                task.cancel()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        delays = [(t - approved) * 1000 for t in outcomes if isinstance(t, float)]
        errors = Counter(
            "no end event within --timeout" if isinstance(e, asyncio.CancelledError) else f"{type(e).__name__}: {str(e)[:120]}"
            for e in outcomes if isinstance(e, BaseException)
        )
    median = statistics.median(delays) if delays else float("nan")
    return {"clients": k, "replay_all_ms": replay_ms, "end_max_ms": max(delays, default=float("nan")), "end_median_ms": median,
            "errors": sum(errors.values()), "error_kinds": dict(errors), "rss_before_mb": rss_before, "rss_open_mb": rss_open}


async def bench_backend(name: str, database_url: str | None, args: argparse.Namespace) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix=f"aitrader-apibench-{name}-"))
    proc, base_url = await start_server(home, database_url)
    try:
        result: dict[str, Any] = {"latency": await latency(base_url, args), "fan_out": []}
        for k in args.clients:
            print(f"  {name}: fan-out to {k} streams", file=sys.stderr)
            try:
                result["fan_out"].append(await fan_out(base_url, proc.pid, k, args))
            except Exception as error:  # one size that breaks down is a finding, not the end of the bench
                result["fan_out"].append({"clients": k, "failed": f"{type(error).__name__}: {error}"[:300]})
        return result
    finally:
        stop_server(proc)
        print(f"  {name}: server log at {home / 'server.log'}", file=sys.stderr)


def print_tables(results: dict[str, dict[str, Any]]) -> None:
    def cell(figure: dict[str, float] | None) -> str:
        return f"{figure['median_ms']:.0f} / {figure['p95_ms']:.0f}" if figure else "-"

    print("\n| backend | runs | 202 ms (med / p95) | first event | decision | end | actions |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, r in results.items():
        lat = r["latency"]
        actions = ", ".join(f"{a} x{n}" for a, n in lat["actions"].items())
        print(f"| {name} | {lat['runs']} | {cell(lat['accepted'])} | {cell(lat['first'])} | {cell(lat['decision'])} | {cell(lat['end'])} | {actions} |")
    print("\n| backend | K | replay all K ms | approve -> all end: max ms | median ms | errors | RSS before MB | RSS with K open MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        for f in r["fan_out"]:
            if "failed" in f:
                print(f"| {name} | {f['clients']} | failed: {f['failed']} | | | | | |")
                continue
            print(f"| {name} | {f['clients']} | {f['replay_all_ms']:.0f} | {f['end_max_ms']:.0f} | {f['end_median_ms']:.0f} "
                  f"| {f['errors']} | {f['rss_before_mb']:.0f} | {f['rss_open_mb']:.0f} |")
            for kind, n in f["error_kinds"].items():
                print(f"|  | | {n} x {kind} | | | | | |")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="timed sequential runs per backend (plus 2 warm-ups)")
    parser.add_argument("--clients", type=lambda s: [int(k) for k in s.split(",")], default=[50, 200, 500], help="SSE fan-out sizes")
    parser.add_argument("--symbol", default="BTC/USDT")
    parser.add_argument("--scenario", default="uptrend", help="uptrend runs every stage down to the paper fill")
    parser.add_argument("--timeout", type=float, default=120, help="seconds a stream may wait for its next bytes / for all K replays")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--postgres-admin-url", default=ADMIN_URL)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    print(f"{args.runs} runs, {args.symbol} {args.scenario}, LLM off, fan-out K = {args.clients}, {os.cpu_count()} CPUs", file=sys.stderr)
    results["sqlite"] = await bench_backend("sqlite", None, args)
    database = f"aitrader_bench_{uuid.uuid4().hex[:8]}"
    try:
        if not args.no_postgres:
            with psycopg.connect(args.postgres_admin_url, autocommit=True, connect_timeout=3) as admin:
                admin.execute(f'CREATE DATABASE "{database}"')
    except psycopg.OperationalError as error:
        print(f"PostgreSQL not reachable at {args.postgres_admin_url}, skipped: {error}", file=sys.stderr)
        args.no_postgres = True
    if not args.no_postgres:
        try:
            url = args.postgres_admin_url.rsplit("/", 1)[0] + f"/{database}"
            results["postgres"] = await bench_backend("postgres", url, args)
        finally:
            with psycopg.connect(args.postgres_admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    print_tables(results)
    if args.json:
        args.json.write_text(json.dumps({"runs": args.runs, "clients": args.clients, "cpus": os.cpu_count(), "results": results}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
