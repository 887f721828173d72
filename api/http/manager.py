"""Background drivers of runs: the HTTP request starts a run and returns, the run goes on without it.

A run is driven by a task owned by this manager, never by a request handler
or an SSE generator, so a client that disconnects cannot cancel it. One
driver per thread at a time: a second start, resume or replay of a busy
thread is refused (409) instead of racing the first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from api.runs import RunOutcome

log = logging.getLogger(__name__)


class ThreadBusy(RuntimeError):
    """Another request is already driving this thread."""


class RunManager:
    def __init__(self, on_finished: Callable[[str, RunOutcome | None, BaseException | None], None] | None = None) -> None:
        self._claimed: set[str] = set()
        self._tasks: dict[str, asyncio.Task[RunOutcome]] = {}
        self._on_finished = on_finished

    def busy(self, thread_id: str) -> bool:
        return thread_id in self._claimed

    def claim(self, thread_id: str) -> None:
        """Reserve a thread before any await, so two requests cannot both pass their checks."""
        if thread_id in self._claimed:
            raise ThreadBusy(f"run {thread_id} is already being driven; wait for it to pause or finish")
        self._claimed.add(thread_id)

    async def claim_when_free(self, thread_id: str, timeout: float) -> None:
        """Claim once the thread's current driver is done, if that is within `timeout`.

        A client that sees a run's interrupt event answers it while the driver is
        still recording the pause; that answer should wait a moment, not bounce.
        """
        deadline = asyncio.get_running_loop().time() + timeout
        while thread_id in self._claimed:
            left = deadline - asyncio.get_running_loop().time()
            task = self._tasks.get(thread_id)
            if left <= 0 or task is None:
                break
            await asyncio.wait({task}, timeout=left)
        self.claim(thread_id)

    def release(self, thread_id: str) -> None:
        self._claimed.discard(thread_id)

    def spawn(self, thread_id: str, work: Callable[[], Awaitable[RunOutcome]]) -> asyncio.Task[RunOutcome]:
        """Drive a claimed thread in the background; the claim is released when the work ends."""

        async def drive() -> RunOutcome:
            outcome, failure = None, None
            try:
                outcome = await work()
                return outcome
            except BaseException as error:
                failure = error
                raise
            finally:
                self.release(thread_id)
                self._tasks.pop(thread_id, None)
                if self._on_finished is not None:
                    self._on_finished(thread_id, outcome, failure)

        task = asyncio.create_task(drive(), name=f"run:{thread_id}")
        task.add_done_callback(_log_failure)
        self._tasks[thread_id] = task
        return task

    async def wait(self, task: asyncio.Task[RunOutcome]) -> RunOutcome:
        # Shielded: a client giving up on `?wait=true` must not cancel the run it was waiting for.
        return await asyncio.shield(task)

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def aclose(self, grace_seconds: float = 10.0) -> None:
        """Let running drivers reach their next pause; cancel what is left (its last checkpoint lets it resume)."""
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed: %s", task.get_name(), task.exception())
