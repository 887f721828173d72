"""What one API process holds while it serves: storage, the lifecycles, drivers, metrics, notifier, stream wake-ups."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass, field

from fastapi import Request

from api.http.manager import RunManager
from api.http.metrics import Metrics
from api.notifications import notifications_for
from api.runs import Lifecycles, RunOutcome
from api.scan import Scans
from state import Settings
from tools.audit_log import AuditRecord
from tools.notify import Notifier
from tools.storage import Storage

log = logging.getLogger(__name__)
# Subscribers under this key wake on any thread's writes (the desk-wide trail).
EVERY_THREAD = "*"


class Wakeups:
    """Per-thread events that wake the SSE streams of a run as soon as it writes (no polling lag in-process)."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Event]] = defaultdict(set)

    def subscribe(self, thread_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._waiting[thread_id].add(event)
        return event

    def unsubscribe(self, thread_id: str, event: asyncio.Event) -> None:
        waiting = self._waiting.get(thread_id)
        if waiting is not None:
            waiting.discard(event)
            if not waiting:
                del self._waiting[thread_id]

    def wake(self, thread_id: str) -> None:
        for key in (thread_id, EVERY_THREAD):
            for event in self._waiting.get(key, ()):
                event.set()


@dataclass
class ServerState:
    settings: Settings
    storage: Storage
    runs: Lifecycles
    notifier: Notifier
    metrics: Metrics = field(default_factory=Metrics)
    wakeups: Wakeups = field(default_factory=Wakeups)
    manager: RunManager = field(init=False)
    run_slots: asyncio.Semaphore = field(init=False)
    scans: Scans = field(init=False)
    # Tasks that drive several threads at once (a scan); the manager holds one task per thread.
    background: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.manager = RunManager(on_finished=self._run_finished)
        self.metrics.running.set_function(lambda: self.manager.running)
        # Runs beyond this many wait their turn (queued) instead of all sharing the cores at once.
        self.run_slots = asyncio.Semaphore(self.settings.api_max_concurrent_runs)
        self.scans = Scans(self.runs)
        self.runs.listeners.append(self.wakeups.wake)
        self.runs.timing_listeners.append(self.metrics.node_finished)
        self.storage.audit.listeners.append(self._records_written)

    def detach(self) -> None:
        self.runs.listeners.remove(self.wakeups.wake)
        self.runs.timing_listeners.remove(self.metrics.node_finished)
        self.storage.audit.listeners.remove(self._records_written)

    def _records_written(self, records: list[AuditRecord]) -> None:
        self.metrics.records_written(records)
        for thread_id in {r.thread_id for r in records}:
            self.wakeups.wake(thread_id)  # governor commands too, which no run reports
        for notification in notifications_for(records):
            self.notifier.publish(notification)

    def _run_finished(self, thread_id: str, outcome: RunOutcome | None, failure: BaseException | None) -> None:
        self.metrics.run_finished(outcome, failure)
        # Streams of a run that failed before writing anything still need to hear it ended.
        self.wakeups.wake(thread_id)


def server_state(request: Request) -> ServerState:
    state: ServerState | None = getattr(request.app.state, "server", None)
    if state is None:
        raise RuntimeError("the API's lifespan has not started (run it under uvicorn or `aitrader serve`)")
    return state
