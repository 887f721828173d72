"""What a run leaves in the audit table: one row per node event and per state change, tied to its checkpoint.

The lifecycle is driven as a stream of node updates and checkpoints; each
node's update becomes rows (its own audit events, then the sections it
changed), stamped with the id of the checkpoint that holds them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from state.sections import AuditEvent
from tools.audit_log import AuditRecord


def jsonable(value: Any) -> Any:
    """Section models and their containers as plain JSON values."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def records_from_update(thread_id: str, node: str, update: Any) -> list[AuditRecord]:
    if node == "__interrupt__":
        return [
            AuditRecord(thread_id=thread_id, node="approval", event="INTERRUPT", verdict="APPROVAL_PENDING", payload={"interrupt_id": i.id, "proposal": jsonable(i.value)})
            for i in update
        ]
    if not isinstance(update, dict):
        return []
    records = [
        AuditRecord(thread_id=thread_id, node=node, event=e.event, verdict=e.verdict, as_of=e.as_of, recorded_at=e.recorded_at, payload=jsonable(e.detail))
        for e in update.get("audit") or []
        if isinstance(e, AuditEvent)
    ]
    changed = {key: jsonable(value) for key, value in update.items() if key != "audit"}
    if changed:
        records.append(AuditRecord(thread_id=thread_id, node=node, event="STATE_CHANGE", verdict=",".join(sorted(changed)), payload=changed))
    return records


def records_from_history(thread_id: str, snapshots: list[Any], recorded: set[str | None]) -> list[AuditRecord]:
    """The rows a run's stream would have written for the checkpoints in `snapshots` (a thread's
    history, any order) that have none in `recorded`: each checkpoint holds the writes of the
    tasks its parent scheduled, which the checkpointer keeps. Progress reports are not kept, so
    they cannot come back. For a process that died before it wrote a step's rows."""
    by_id = {s.config["configurable"]["checkpoint_id"]: s for s in snapshots}
    records: list[AuditRecord] = []
    for snapshot in sorted(snapshots, key=lambda s: s.config["configurable"]["checkpoint_id"]):
        checkpoint_id = snapshot.config["configurable"]["checkpoint_id"]
        parent = by_id.get(((snapshot.parent_config or {}).get("configurable") or {}).get("checkpoint_id"))
        if checkpoint_id in recorded or parent is None:
            continue
        for task in parent.tasks:
            if task.result is not None and task.name != "__start__":  # the input is not a node's update
                records += [r.model_copy(update={"checkpoint_id": checkpoint_id}) for r in records_from_update(thread_id, task.name, task.result)]
    return records


def progress_record(thread_id: str, chunk: Any) -> AuditRecord:
    """A long node's progress report (LangGraph's custom stream): which node, how far."""
    payload = jsonable(chunk) if isinstance(chunk, dict) else {"message": str(chunk)}
    node = str(payload.get("node", "graph")) if isinstance(payload, dict) else "graph"
    return AuditRecord(thread_id=thread_id, node=node, event="PROGRESS", verdict=str(payload.get("stage", "progress"))[:60], payload=payload)
