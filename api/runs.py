"""Running lifecycles: start, resume at the approval interrupt, read history, replay.

The CLI, the HTTP API and the benchmark all drive runs through this module,
so a run behaves the same whichever surface started it.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from datetime import UTC, datetime
from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.types import Command

from api.audit_trail import progress_record, records_from_history, records_from_update
from api.run_outcome import CheckpointInfo, NotPending, RunNotFound, RunOutcome, StreamEnd, outcome_from
from graphs.trade_lifecycle import RECURSION_LIMIT, build_graph
from state import Settings
from state.sections import ApprovalRequest, ApprovalResponse, RunRequest
from tools.context import ServiceHub, Services
from tools.llm import make_chat_model
from tools.audit_log import AuditRecord
from tools.database import Session
from tools.screen_cache import ScreenCache
from tools.storage import Storage
from tools.requests import make_request  # noqa: F401  re-exported: surfaces build requests through here


def new_thread_id(symbol: str) -> str:
    return f"{symbol.replace('/', '-').replace(':', '-').lower()}-{uuid.uuid4().hex[:12]}"


class Lifecycles:
    def __init__(self, settings: Settings, storage: Storage, hub: ServiceHub | None = None) -> None:
        self.settings = settings
        self.storage = storage
        # Inert outside a scan's `ScreenCache.scope()`: every other run executes every node.
        self.screen_cache = ScreenCache()
        self.graph = build_graph(storage.checkpointer, storage.store, cache=self.screen_cache)
        self.hub = hub or ServiceHub(settings, storage.candles, llm=make_chat_model(settings), ledger=storage.ledger)
        # Called with a thread id whenever that run wrote events or changed status (the HTTP stream wakes on it).
        self.listeners: list[Callable[[str], None]] = []
        # Called with (node, seconds) as each task finishes; only asked of LangGraph when someone listens.
        self.timing_listeners: list[Callable[[str, float], None]] = []

    def _config(self, thread_id: str, checkpoint_id: str | None = None) -> dict[str, Any]:
        configurable = {"thread_id": thread_id}
        if checkpoint_id:
            configurable["checkpoint_id"] = checkpoint_id
        return {"configurable": configurable, "recursion_limit": RECURSION_LIMIT}

    def services_for(self, request: RunRequest) -> Services:
        # Runtime context is not checkpointed: every resume and replay builds it again, always with paper.
        return self.hub.for_request(request)

    async def services_for_thread(self, thread_id: str, request: RunRequest) -> Services:
        """A fork keeps trading on a scratch book, under its what-if settings, whenever it is resumed."""
        metadata = (await self.graph.aget_state(self._config(thread_id))).metadata or {}
        parent = metadata.get("parent_thread_id")
        if not parent:
            return self.services_for(request)
        services = await self.hub.scratch_for(request, thread_id=str(parent))
        overrides = metadata.get("fork_settings") or {}
        return dataclasses.replace(services, settings=self.settings.with_overrides(overrides)) if overrides else services

    async def start(
        self,
        request: RunRequest,
        *,
        thread_id: str | None = None,
        services: Services | None = None,
        durability: str = "async",
        metadata: dict[str, Any] | None = None,
        stop_before: list[str] | None = None,
        batch_events: bool = False,
        claimed: bool = False,
    ) -> RunOutcome:
        """Run a new thread. `stop_before` pauses it ahead of those nodes (a scan's screening pass) and
        then leaves no events behind: the caller either continues the thread or deletes and re-runs it.
        `batch_events` writes the run's audit rows once at its end, each still under its own step's
        checkpoint: for runs nobody watches live (a scan's symbols); `backfill_events` restores them
        from the checkpoints should the process die before. `claimed`: the caller has just written the
        thread's first run row (a scan claims a symbol's thread before it decides it)."""
        thread_id = thread_id or new_thread_id(request.symbol)
        # The clock is fixed before the first node, so every replay of this thread sees the same moment.
        request = request.model_copy(update={"as_of": await self.hub.clock_for(request)})
        config = {**self._config(thread_id), "metadata": metadata or {}}
        services = services or self.services_for(request)
        return await self._drive({"request": request}, config, services, durability, stop_before, batch_events, claimed)

    async def outcome(self, thread_id: str) -> RunOutcome:
        return self._outcome_of(thread_id, await self.graph.aget_state(self._config(thread_id)))

    @staticmethod
    def _outcome_of(thread_id: str, snapshot: Any) -> RunOutcome:
        return outcome_from(thread_id, snapshot.values, snapshot.interrupts)

    async def waiting(self, thread_id: str, interrupt_id: str | None = None) -> RunOutcome:
        """The run, if it waits at an approval (and at `interrupt_id`, when one is named); else NotPending."""
        current = await self.outcome(thread_id)
        if current.pending is None:
            raise NotPending(f"run {thread_id} is not waiting for approval")
        if interrupt_id is not None and interrupt_id != current.pending.interrupt_id:
            raise NotPending(f"interrupt {interrupt_id} is not pending on run {thread_id} (pending: {current.pending.interrupt_id})")
        return current

    async def resume(
        self, thread_id: str, response: ApprovalResponse, *, interrupt_id: str | None = None, services: Services | None = None
    ) -> RunOutcome:
        current = await self.waiting(thread_id, interrupt_id)
        request = RunRequest.model_validate(current.values["request"])
        resume = Command(resume={current.pending.interrupt_id: response.model_dump(mode="json")})
        return await self._drive(resume, self._config(thread_id), services or await self.services_for_thread(thread_id, request))

    async def continue_run(self, thread_id: str, metadata: dict[str, Any] | None = None) -> RunOutcome:
        """Carry on a run that stopped without finishing (a crashed process) from its last checkpoint.

        `metadata` goes on the checkpoints it writes (LangGraph does not carry the earlier ones' over)."""
        snapshot = await self.graph.aget_state(self._config(thread_id))
        current = self._outcome_of(thread_id, snapshot)
        if current.pending is not None:
            raise NotPending(f"run {thread_id} is waiting for approval: approve or reject it instead")
        if not snapshot.next:
            raise NotPending(f"run {thread_id} has finished: {current.decision.action if current.decision else 'no decision'}")
        request = RunRequest.model_validate(current.values["request"])
        config = {**self._config(thread_id), "metadata": metadata or {}}
        return await self._drive(None, config, await self.services_for_thread(thread_id, request))

    async def backfill_events(self, thread_id: str) -> int:
        """Write the audit rows of every checkpoint of the thread that has none; returns how many."""
        recorded = {row.checkpoint_id for row in await self.storage.audit.trail(thread_id)}
        snapshots = [s async for s in self.graph.aget_state_history(self._config(thread_id))]
        records = records_from_history(thread_id, snapshots, recorded)
        await self.storage.audit.append(records)
        return len(records)

    async def settle(self, thread_id: str) -> None:
        """Record what a run killed after its last checkpoint left unrecorded: its steps' events, its status.

        The audit rows of a step are written once its checkpoint exists (or all at the run's end),
        so a process that dies in between leaves a finished thread without them; whoever finds
        the thread finishes the record: from the checkpoints' writes where the run kept per-step
        checkpoints, else the decision event of the final state.
        """
        snapshot = await self.graph.aget_state(self._config(thread_id))
        if not snapshot.values:
            raise RunNotFound(f"no run with thread id {thread_id!r}")
        await self.backfill_events(thread_id)
        trail = await self.storage.audit.trail(thread_id)
        if not snapshot.next and not any(r.node == "audit" and r.event == "DECISION" for r in trail):
            closing = [e for e in snapshot.values.get("audit") or [] if e.event == "DECISION"][-1:]
            checkpoint_id = snapshot.config["configurable"]["checkpoint_id"]
            records = [r.model_copy(update={"checkpoint_id": checkpoint_id}) for r in records_from_update(thread_id, "audit", {"audit": closing})]
            await self.storage.audit.append(records)
        if await self.storage.ledger.run(thread_id) is None:
            await self.storage.ledger.run_started(thread_id, RunRequest.model_validate(snapshot.values["request"]).symbol)
        await self._track_pending(thread_id)
        self._notify(thread_id)

    async def history(self, thread_id: str, *, limit: int = 200) -> list[CheckpointInfo]:
        snapshots = [s async for s in self.graph.aget_state_history(self._config(thread_id), limit=limit)]
        if not snapshots:
            raise RunNotFound(f"no run with thread id {thread_id!r}")
        by_id = {s.config["configurable"]["checkpoint_id"]: s for s in snapshots}
        infos = []
        for snapshot in snapshots:
            parent_id = (snapshot.parent_config or {}).get("configurable", {}).get("checkpoint_id")
            parent = by_id.get(parent_id)
            # A checkpoint is written by the tasks its parent scheduled.
            nodes = [t.name for t in parent.tasks] if parent else ["input"]
            infos.append(
                CheckpointInfo(
                    checkpoint_id=snapshot.config["configurable"]["checkpoint_id"],
                    step=snapshot.metadata.get("step", -1),
                    nodes=sorted(set(nodes)),
                    created_at=snapshot.created_at,
                    next=list(snapshot.next),
                )
            )
        return infos

    async def replay(self, thread_id: str, checkpoint_id: str) -> RunOutcome:
        snapshot = await self.graph.aget_state(self._config(thread_id, checkpoint_id))
        if snapshot.config["configurable"].get("checkpoint_id") != checkpoint_id:
            raise RunNotFound(f"no checkpoint {checkpoint_id!r} on run {thread_id!r}")
        # The request never changes within a thread; the input checkpoint just has not applied it yet.
        request = RunRequest.model_validate((await self.outcome(thread_id)).values["request"])
        return await self._drive(None, snapshot.config, await self.hub.scratch_for(request, thread_id=thread_id))

    async def _drive(
        self,
        graph_input: Any,
        config: dict[str, Any],
        context: Services,
        durability: str = "async",
        stop_before: list[str] | None = None,
        batch_events: bool = False,
        claimed: bool = False,
    ) -> RunOutcome:
        """Run the graph as a stream, writing each step's events to the audit table under its checkpoint.

        The audit table doubles as the run's event log: its sequence numbers are the event ids the
        HTTP stream hands out, and listeners hear the thread id after every write. With durability
        "exit" only the last checkpoint is kept, so the events wait for it and carry its id.
        The outcome comes from the stream itself (its last values, its interrupts): reading the
        state back would deserialise every section the run has just produced.
        """
        thread_id = config["configurable"]["thread_id"]
        buffered: list[AuditRecord] = []
        stamped: list[AuditRecord] = []
        seen = StreamEnd()

        def stamp(checkpoint_id: str | None) -> None:
            stamped.extend(r.model_copy(update={"checkpoint_id": checkpoint_id}) for r in buffered)
            buffered.clear()

        async def write(closing: Callable[[Session], Awaitable[None]] | None = None) -> None:
            if stamped or closing:
                await self.storage.audit.append(stamped, then=closing)
                stamped.clear()
                self._notify(thread_id)

        # A thread's first run row means nothing of it was recorded before: no approval to clear at its end.
        first_run = claimed
        if graph_input is not None and not isinstance(graph_input, Command):
            if not claimed:
                parent = config.get("metadata", {}).get("parent_thread_id")
                first_run = await self.storage.ledger.run_started(thread_id, graph_input["request"].symbol, parent)
        else:
            await self.storage.ledger.run_status(thread_id, "running")
        self._notify(thread_id)
        # With "exit" no step's checkpoint is kept, so there is no id to stamp: skip building them per step.
        modes = ["updates", "values", "custom", *(["checkpoints"] if durability != "exit" else []), *(["tasks"] if self.timing_listeners else [])]
        started: dict[str, float] = {}
        finished = False
        try:
            stream = self.graph.astream(
                graph_input, config, context=context, durability=durability, stream_mode=modes, interrupt_before=stop_before
            )
            async for mode, chunk in stream:
                if mode == "tasks":
                    self._time_task(chunk, started)
                elif mode == "updates":
                    seen.updates(chunk)
                    for node, update in chunk.items():
                        if node != "__metadata__":  # a cached step's marker, not a node
                            buffered.extend(records_from_update(thread_id, node, update))
                elif mode == "values":
                    seen.values = chunk
                elif mode == "custom":
                    buffered.append(progress_record(thread_id, chunk))
                else:  # the checkpoint that holds the updates streamed before it
                    seen.checkpoint_id = chunk["config"]["configurable"]["checkpoint_id"]
                    stamp(seen.checkpoint_id)
                    if not batch_events:
                        await write()
            finished = True
            if stop_before and seen.stopped:
                buffered.clear()  # stopped where the caller asked: it re-runs or continues the thread itself
                stamped.clear()
                return seen.outcome(thread_id)
        except BaseException as error:
            await self.storage.ledger.run_status(thread_id, "failed", None, f"{type(error).__name__}: {error}"[:500])
            raise
        finally:
            # Whatever the run got to before an error is recorded too; the last checkpoint is its best anchor.
            if buffered:
                exit_write = durability == "exit" or not finished
                stamp(await self.storage.last_checkpoint_id(thread_id) if exit_write else seen.checkpoint_id)
            if not finished:
                await write()
        try:
            # LangGraph streams the values it starts from too, so this read back is only a safety net.
            outcome = seen.outcome(thread_id) if seen.values else await self.outcome(thread_id)
        except BaseException:
            await write()
            raise

        async def close(session: Session) -> None:
            await self._track_pending(thread_id, outcome, first_run=first_run, session=session)

        await write(close)  # the run's last events and its status commit together
        return outcome

    def _time_task(self, chunk: dict[str, Any], started: dict[str, float]) -> None:
        if "result" not in chunk and "error" not in chunk:
            started[chunk["id"]] = time.perf_counter()
        elif chunk["id"] in started:
            seconds = time.perf_counter() - started.pop(chunk["id"])
            for listener in list(self.timing_listeners):
                listener(chunk["name"], seconds)

    def _notify(self, thread_id: str) -> None:
        for listener in list(self.listeners):
            listener(thread_id)

    async def _track_pending(
        self, thread_id: str, outcome: RunOutcome | None = None, *, first_run: bool = False, session: Session | None = None
    ) -> None:
        ledger = self.storage.ledger
        outcome = outcome or await self.outcome(thread_id)
        if outcome.pending is None:
            if not first_run:
                await ledger.clear_pending(thread_id, session=session)
            decision = outcome.decision
            reason = decision.reason if decision else None
            await ledger.run_status(thread_id, "done", decision.action if decision else None, reason, session=session)
            return
        proposal = ApprovalRequest.model_validate(outcome.pending.proposal)
        pending = outcome.pending
        await ledger.set_pending(thread_id, pending.interrupt_id, proposal.symbol, proposal.expires_at, json.dumps(pending.proposal), session=session)
        await ledger.run_status(thread_id, "paused", None, "waiting for approval", session=session)

    async def pending_approvals(self) -> list[dict[str, Any]]:
        return [{**row, "proposal": json.loads(str(row["proposal"]))} for row in await self.storage.ledger.pending()]

    async def expired(self, now: datetime | None = None) -> list[tuple[str, str]]:
        """(thread id, interrupt id) of every approval left unanswered past its expiry."""
        now = now or datetime.now(UTC)
        return [
            (str(row["thread_id"]), str(row["interrupt_id"]))
            for row in await self.storage.ledger.pending()
            if row["expires_at"] and datetime.fromisoformat(str(row["expires_at"])) < now
        ]

    async def expire(self, thread_id: str, interrupt_id: str) -> RunOutcome | None:
        """Resolve one expired approval: the approval node records it as expired."""
        response = ApprovalResponse(action="reject", by="expiry", reason="approval expired unanswered")
        try:
            return await self.resume(thread_id, response, interrupt_id=interrupt_id)
        except NotPending:
            await self.storage.ledger.clear_pending(thread_id)
            return None

    async def expire_stale(self, now: datetime | None = None) -> list[RunOutcome]:
        outcomes = [await self.expire(thread_id, interrupt_id) for thread_id, interrupt_id in await self.expired(now)]
        return [outcome for outcome in outcomes if outcome is not None]
