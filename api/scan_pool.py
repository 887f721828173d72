"""Local worker processes for scans: Python runs one core per process, so a scan uses one process per core.

Each worker opens its own storage (its own checkpoint saver: one AsyncPostgresSaver
serialises its queries), its own indicator caches and its own event loop, kept for
the pool's life so caches survive from one symbol, and one scheduled cycle, to the next.
The processes are spawned, not forked: a fork would copy the parent's event loop and
open database connections.
"""

from __future__ import annotations

import asyncio
import atexit
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from contextlib import AsyncExitStack
from collections.abc import Coroutine
from datetime import datetime
from typing import Any, TypeVar

from state import Settings
from state.scan import ScanEntry, ScanRequest

T = TypeVar("T")


class _Worker:
    """What one worker process holds between calls."""

    def __init__(self, settings: Settings) -> None:
        # BLAS threads would fight the other workers for the same cores.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        from api.runs import Lifecycles
        from tools.storage import open_storage

        # The loop runs in a daemon thread, and so do the threads it starts (aiosqlite's connection
        # thread inherits the flag): when the pool stops this process, nothing of ours keeps it alive.
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="scan-worker-loop", daemon=True).start()
        self.stack = AsyncExitStack()
        storage = self._call(self.stack.enter_async_context(open_storage(settings)))
        self.runs = Lifecycles(settings, storage)
        # When the pool lets this process exit: close the storage (its store's batch task, its pools) first.
        atexit.register(self.close)

    def close(self) -> None:
        async def closing() -> None:
            await self.runs.hub.aclose()
            await self.stack.aclose()
            # What the storage left running (the store's batching task), ended as asyncio.run would.
            leftovers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in leftovers:
                task.cancel()
            await asyncio.gather(*leftovers, return_exceptions=True)

        try:
            self._call(closing(), timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)

    def _call(self, work: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def decide(self, request: ScanRequest, symbol: str, as_of: datetime | None) -> ScanEntry:
        from api.scan import decide_symbol

        return self._call(decide_symbol(self.runs, request, symbol, as_of))


_worker: _Worker | None = None


def _start(settings: Settings) -> None:
    global _worker
    _worker = _Worker(settings)


def _decide(request: ScanRequest, symbol: str, as_of: datetime | None) -> ScanEntry:
    assert _worker is not None, "worker process not initialised"
    return _worker.decide(request, symbol, as_of)


def _ready() -> int:
    return os.getpid()


class ProcessPoolDispatcher:
    """Decides symbols in `workers` local processes; the scanner's `max_concurrency` keeps them fed."""

    def __init__(self, settings: Settings, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        # BLAS threads inherited from this process would fight the workers for the same cores.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start, initargs=(settings,))

    async def start(self) -> None:
        """Wait until every worker has imported and opened its storage (seconds), so scan figures exclude it.

        Open the storage in this process first (the CLI, the API and the bench do): it sets the schema up
        once, where workers setting up a fresh database at the same moment would race its migrations.
        """
        loop = asyncio.get_running_loop()
        pids: set[int] = set()
        while len(pids) < self.workers:
            pids.update(await asyncio.gather(*(loop.run_in_executor(self.pool, _ready) for _ in range(self.workers * 2))))

    async def decide(self, request: ScanRequest, symbol: str, as_of: datetime | None) -> ScanEntry:
        return await asyncio.get_running_loop().run_in_executor(self.pool, _decide, request, symbol, as_of)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
