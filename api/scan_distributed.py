"""Scans spread over worker processes on any host, through taskiq over RabbitMQ.

The coordinator (`aitrader scan`, the API) sends one message per symbol; `aitrader worker`
processes decide them with `api.scan.decide_symbol` against the shared database. The
outcome lives in that database (the symbol's thread and its `aitrader_runs` row), so
there is no result backend: the coordinator watches the ledger rows of its outstanding
symbols and reads each decided thread's state.

Delivery: a message is acknowledged only after its task returned (taskiq's `when_saved`,
which with no result backend means right after the task ran). A worker killed mid-task
never acknowledges; RabbitMQ hands its messages (at most `qos` of them) to another worker,
where `decide_symbol` finds the thread and returns the decision already made, continues an
unfinished commit pass, or re-screens: each symbol is decided once whichever worker ends it.
A kill between a run's last checkpoint and its bookkeeping is repaired there too
(`Lifecycles.settle`: the missing decision event and the run's status).

Environment: AITRADER_BROKER_URL (amqp://guest:guest@127.0.0.1:5672/), AITRADER_SCAN_QUEUE
(aitrader.scan), AITRADER_SCAN_PREFETCH (2) and the usual AITRADER_* settings, of which
AITRADER_DATABASE_URL must point every worker and the coordinator at the same Postgres.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aio_pika import ExchangeType
from taskiq import SimpleRetryMiddleware, TaskiqDepends, TaskiqEvents, TaskiqState
from taskiq_aio_pika import AioPikaBroker, Exchange, Queue

from api.runs import Lifecycles
from api.scan import WORKER, decide_symbol
from api.worker_cli import add_parser, worker_command
from state import Settings
from state.scan import ScanEntry, ScanRequest
from tools.ledger import RUNS
from tools.scan import entry_from_values, scan_thread_id
from tools.storage import open_storage

logger = logging.getLogger("aitrader.scan_worker")

DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_QUEUE = "aitrader.scan"
FINAL = ("done", "paused", "failed", "skipped")
# The ledger status each kind of entry leaves behind once the symbol is settled.
SETTLED = {"decided": "done", "paused": "paused"}


def make_broker(url: str | None = None, queue: str | None = None, prefetch: int | None = None) -> AioPikaBroker:
    """A broker on one durable queue; unset arguments come from the environment."""
    url = url or os.environ.get("AITRADER_BROKER_URL") or DEFAULT_BROKER_URL
    queue = queue or os.environ.get("AITRADER_SCAN_QUEUE") or DEFAULT_QUEUE
    prefetch = prefetch or int(os.environ.get("AITRADER_SCAN_PREFETCH") or 2)
    return AioPikaBroker(
        url,
        # RabbitMQ gives each worker at most this many unacknowledged messages: all a killed worker can hold up.
        qos=prefetch,
        exchange=Exchange(name="aitrader", type=ExchangeType.DIRECT),
        task_queues=[Queue(name=queue)],
        dead_letter_queue=Queue(name=f"{queue}.dead_letter"),
    ).with_middlewares(SimpleRetryMiddleware(default_retry_count=3))


broker = DEFAULT_BROKER = make_broker()


@broker.on_event(TaskiqEvents.WORKER_STARTUP)
async def open_worker(state: TaskiqState) -> None:
    """One storage (its own checkpoint saver and pool) and one Lifecycles per worker process."""
    settings = Settings()
    stack = AsyncExitStack()
    storage = await stack.enter_async_context(open_storage(settings))
    state.stack, state.runs = stack, Lifecycles(settings, storage)
    logger.info("worker=%s ready on %s", WORKER, "PostgreSQL" if settings.database_url else settings.sqlite_path)


@broker.on_event(TaskiqEvents.WORKER_SHUTDOWN)
async def close_worker(state: TaskiqState) -> None:
    runs: Lifecycles | None = state.get("runs")
    if runs is not None:
        await runs.hub.aclose()
        await state.stack.aclose()


@broker.task(task_name="aitrader.scan.decide_symbol", ack_type="when_saved", retry_on_error=True, max_retries=3)
async def decide_symbol_task(scan_json: str, symbol: str, as_of_iso: str, state: TaskiqState = TaskiqDepends()) -> None:
    """Decide one symbol of a scan; its outcome is the thread and its ledger row."""
    runs: Lifecycles = state.runs
    scan = ScanRequest.model_validate_json(scan_json)
    thread_id = scan_thread_id(scan.scan_id, symbol)
    logger.info("worker=%s deciding %s thread=%s", WORKER, symbol, thread_id)
    try:
        entry = await decide_symbol(runs, scan, symbol, datetime.fromisoformat(as_of_iso))
    except asyncio.CancelledError:
        # `_drive` marked the run failed; it is not: the worker stopped, and the symbol is sent again.
        with contextlib.suppress(Exception):
            await runs.storage.ledger.run_status(thread_id, "queued", None, "worker stopped mid-run; sent again")
        raise
    logger.info("worker=%s decided %s status=%s decision=%s", WORKER, symbol, entry.status, entry.decision)


@dataclass
class _Waiting:
    future: asyncio.Future[dict[str, Any]]
    # A "failed" or "skipped" row from an earlier attempt does not count until it is written again.
    stale_updated_at: str | None


class TaskiqDispatcher:
    """Sends each symbol to the workers and waits for its ledger row to settle.

    One poller reads the rows of every outstanding thread in one query every `poll_interval`
    seconds. `timeout` (None: wait for ever, e.g. until a worker starts) bounds each symbol.
    Use `async with TaskiqDispatcher(runs) as dispatcher:` or `start()` / `aclose()`.
    """

    def __init__(self, runs: Lifecycles, broker: AioPikaBroker | None = None, *, poll_interval: float = 0.1, timeout: float | None = None) -> None:
        self.runs = runs
        self.broker = broker or DEFAULT_BROKER
        self.poll_interval = poll_interval
        self.timeout = timeout
        self._waiting: dict[str, _Waiting] = {}
        self._poller: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.broker.startup()  # declares the queue: messages wait there until a worker comes
        self._poller = asyncio.create_task(self._poll(), name="taskiq-dispatcher-poller")

    async def aclose(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        for waiting in self._waiting.values():
            if not waiting.future.done():
                waiting.future.set_exception(RuntimeError("the dispatcher closed before a worker decided the symbol"))
        await self.broker.shutdown()

    async def __aenter__(self) -> TaskiqDispatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def decide(self, request: ScanRequest, symbol: str, as_of: datetime) -> ScanEntry:
        thread_id = scan_thread_id(request.scan_id, symbol)
        try:
            before = await self.runs.storage.ledger.run(thread_id)
            if before is not None and before["status"] in SETTLED.values():
                return await self._entry(symbol, thread_id, before)  # decided by an earlier run of this scan
            waiting = self._waiting.get(thread_id)
            if waiting is None:
                stale = str(before["updated_at"]) if before is not None and before["status"] in ("failed", "skipped") else None
                waiting = self._waiting[thread_id] = _Waiting(asyncio.get_running_loop().create_future(), stale)
            await decide_symbol_task.kicker().with_broker(self.broker).kiq(request.model_dump_json(), symbol, as_of.isoformat())
            row = await asyncio.wait_for(asyncio.shield(waiting.future), self.timeout)
            return await self._entry(symbol, thread_id, row)
        except TimeoutError:
            return ScanEntry(symbol=symbol, thread_id=thread_id, status="failed", reason=f"no worker decided it within {self.timeout:g} s")
        except Exception as error:
            return ScanEntry(symbol=symbol, thread_id=thread_id, status="failed", reason=f"{type(error).__name__}: {error}"[:500])
        finally:
            self._waiting.pop(thread_id, None)

    async def _entry(self, symbol: str, thread_id: str, row: dict[str, Any]) -> ScanEntry:
        snapshot = await self.runs.graph.aget_state({"configurable": {"thread_id": thread_id}})
        worker = (snapshot.metadata or {}).get("worker")
        elapsed = _elapsed_ms(row)
        if row["status"] == "skipped":  # the worker found the desk halted before it started the symbol
            return ScanEntry(symbol=symbol, thread_id=thread_id, status="skipped", reason=str(row.get("reason") or "not started"), worker=worker)
        if row["status"] == "failed" or not snapshot.values:
            reason = str(row.get("reason") or "the run failed without a reason")[:500]
            return ScanEntry(symbol=symbol, thread_id=thread_id, status="failed", reason=reason, elapsed_ms=elapsed, worker=worker)
        return entry_from_values(symbol, thread_id, snapshot.values, paused=bool(snapshot.interrupts), elapsed_ms=elapsed, worker=worker)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            ids = [thread_id for thread_id, waiting in self._waiting.items() if not waiting.future.done()]
            if not ids:
                continue
            try:
                rows = await self.runs.storage.ledger.db.fetch(
                    f"SELECT thread_id, status, reason, started_at, updated_at FROM {RUNS} WHERE thread_id IN ({', '.join(['%s'] * len(ids))})", ids
                )
            except Exception as error:  # a database hiccup: the rows are still there at the next poll
                logger.warning("polling the ledger failed: %s", error)
                continue
            for row in rows:
                waiting = self._waiting.get(row["thread_id"])
                if waiting is None or waiting.future.done() or row["status"] not in FINAL:
                    continue  # "running" (screen or commit pass) and "queued" are not final
                if waiting.stale_updated_at is not None and str(row["updated_at"]) == waiting.stale_updated_at:
                    continue
                waiting.future.set_result(row)


def _elapsed_ms(row: dict[str, Any]) -> float | None:
    """From the run's first start to its last status, as the workers recorded them (None: the scanner times it)."""
    try:
        return (datetime.fromisoformat(str(row["updated_at"])) - datetime.fromisoformat(str(row["started_at"]))).total_seconds() * 1000
    except (KeyError, TypeError, ValueError):
        return None


if __name__ == "__main__":  # `python -m api.scan_distributed worker ...`, as `aitrader worker ...`
    parser = argparse.ArgumentParser(prog="aitrader")
    add_parser(parser.add_subparsers(dest="command", required=True))
    worker_command(parser.parse_args())
