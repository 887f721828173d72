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
import functools
import multiprocessing
import os
import threading
import zlib
from collections import deque
from collections.abc import Coroutine
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import AsyncExitStack
from dataclasses import dataclass
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


@dataclass(eq=False)  # a job is itself: the same symbol may be asked twice
class _Job:
    request: ScanRequest
    symbol: str
    as_of: datetime | None
    answer: asyncio.Future[ScanEntry]


class ProcessPoolDispatcher:
    """Decides symbols in `workers` local processes; the scanner's `max_concurrency` keeps them fed.

    A symbol has a home worker (a hash of its name) and goes there whenever that worker is free
    or will be next: a scan's next cycle then finds the symbol's larger timeframes, and what the
    nodes derived from them, in that worker's caches. A worker with nothing of its own to do takes
    the oldest symbol waiting for another, so no core idles while symbols wait. `concurrency`
    (one running and two waiting per worker) is what keeps both true: with one waiting, a worker
    finds its queue empty often enough that ~15 % of symbols change worker; with two, ~1 %.
    """

    def __init__(self, settings: Settings, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        # BLAS threads inherited from this process would fight the workers for the same cores.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        context = multiprocessing.get_context("spawn")
        # One single-process executor per worker: a symbol is sent to a chosen process, not to whichever is free.
        self.pools = [ProcessPoolExecutor(1, mp_context=context, initializer=_start, initargs=(settings,)) for _ in range(workers)]
        self._waiting: list[deque[_Job]] = [deque() for _ in range(workers)]
        self._running: list[_Job | None] = [None] * workers
        self._broken: set[int] = set()  # workers whose process died: their symbols go to the others
        self.pids: list[int] = []  # each worker's process, once started

    @property
    def concurrency(self) -> int:
        """Symbols in flight that keep each worker busy with its own next ones waiting behind."""
        return 3 * self.workers

    def home(self, symbol: str) -> int:
        home = zlib.crc32(symbol.encode()) % self.workers
        if home not in self._broken:
            return home
        alive = [worker for worker in range(self.workers) if worker not in self._broken]
        if not alive:
            raise BrokenProcessPool("every scan worker process has died")
        return min(alive, key=lambda worker: len(self._waiting[worker]))

    async def start(self) -> None:
        """Wait until every worker has imported and opened its storage (seconds), so scan figures exclude it.

        Open the storage in this process first (the CLI, the API and the bench do): it sets the schema up
        once, where workers setting up a fresh database at the same moment would race its migrations.
        """
        loop = asyncio.get_running_loop()
        self.pids = list(await asyncio.gather(*(loop.run_in_executor(pool, _ready) for pool in self.pools)))

    async def decide(self, request: ScanRequest, symbol: str, as_of: datetime | None) -> ScanEntry:
        job = _Job(request, symbol, as_of, asyncio.get_running_loop().create_future())
        home = self.home(symbol)
        self._waiting[home].append(job)
        self._feed()
        try:
            return await job.answer
        except asyncio.CancelledError:
            for waiting in self._waiting:  # not started: it never will be
                if job in waiting:
                    waiting.remove(job)
            raise

    def _feed(self) -> None:
        # Every free worker takes its own symbols first; only then may one left idle take another's.
        for stealing in (False, True):
            for worker in range(self.workers):
                if self._running[worker] is None and worker not in self._broken:
                    job = self._next_for(worker, stealing)
                    if job is not None:
                        self._submit(worker, job)

    def _next_for(self, worker: int, stealing: bool) -> _Job | None:
        if self._waiting[worker]:
            return self._waiting[worker].popleft()
        if not stealing:
            return None
        longest = max(range(self.workers), key=lambda other: len(self._waiting[other]))
        return self._waiting[longest].popleft() if self._waiting[longest] else None

    def _submit(self, worker: int, job: _Job) -> None:
        try:
            done = asyncio.get_running_loop().run_in_executor(self.pools[worker], _decide, job.request, job.symbol, job.as_of)
        except BrokenProcessPool as error:
            self._lost(worker, job, error)
            return
        self._running[worker] = job
        done.add_done_callback(functools.partial(self._finished, worker, job))

    def _finished(self, worker: int, job: _Job, done: asyncio.Future[ScanEntry]) -> None:
        self._running[worker] = None
        error = None if done.cancelled() else done.exception()
        if isinstance(error, BrokenProcessPool):
            self._lost(worker, job, error)
        elif not job.answer.done():  # the caller may have given up on it (a stopped scan)
            if done.cancelled():
                job.answer.cancel()
            elif error is not None:
                job.answer.set_exception(error)
            else:
                job.answer.set_result(done.result())
        self._feed()

    def _lost(self, worker: int, job: _Job, error: BaseException) -> None:
        """The worker's process died: its symbol fails (the scan records it), the symbols waiting for it move on."""
        self._broken.add(worker)
        if not job.answer.done():
            job.answer.set_exception(error)
        stranded, self._waiting[worker] = self._waiting[worker], deque()
        for waiting in stranded:
            try:
                self._waiting[self.home(waiting.symbol)].append(waiting)
            except BrokenProcessPool as none_left:
                if not waiting.answer.done():
                    waiting.answer.set_exception(none_left)

    def close(self) -> None:
        for pool in self.pools:
            pool.shutdown(wait=False, cancel_futures=True)
        for pool in self.pools:
            pool.shutdown(wait=True)
