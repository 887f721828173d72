"""What a run came to: its decision or pending approval and its state, read from its stream or its checkpoint."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from api.audit_trail import jsonable
from state.sections import DecisionSection


class RunNotFound(LookupError):
    pass


class NotPending(RuntimeError):
    """A resume aimed at a run that is not waiting at an interrupt (or not at that one)."""


class PendingApproval(BaseModel):
    interrupt_id: str
    proposal: dict[str, Any]


class RunOutcome(BaseModel):
    thread_id: str
    decision: DecisionSection | None
    pending: PendingApproval | None
    values: dict[str, Any]

    def document(self) -> dict[str, Any]:
        """Every section as JSON, for `--json` and the API."""
        sections = {
            key: jsonable(value) for key, value in self.values.items() if key not in ("decision",)
        }
        return {
            "thread_id": self.thread_id,
            "decision": self.decision.model_dump(mode="json") if self.decision else None,
            "pending_interrupt": self.pending.model_dump(mode="json") if self.pending else None,
            "state": sections,
        }


class CheckpointInfo(BaseModel):
    checkpoint_id: str
    step: int
    nodes: list[str]
    created_at: str | None
    next: list[str]


class StreamEnd:
    """Where a run's stream left the thread: its last values, its pending interrupts, its last checkpoint."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.interrupts: tuple[Any, ...] = ()
        self.stopped = False  # paused ahead of a node by `interrupt_before` (an interrupt with no value)
        self.checkpoint_id: str | None = None

    def updates(self, chunk: dict[str, Any]) -> None:
        # A run stops at its interrupts (after the rest of that step), so they are the run's last word.
        if "__interrupt__" in chunk:
            self.interrupts += tuple(chunk["__interrupt__"])
            self.stopped = self.stopped or not chunk["__interrupt__"]

    def outcome(self, thread_id: str) -> RunOutcome:
        return outcome_from(thread_id, {k: v for k, v in self.values.items() if k != "__interrupt__"}, self.interrupts)


def outcome_from(thread_id: str, values: Any, interrupts: tuple[Any, ...]) -> RunOutcome:
    """A run's outcome from its state values and pending interrupts (the first is the one to answer)."""
    if not values:
        raise RunNotFound(f"no run with thread id {thread_id!r}")
    first = interrupts[0] if interrupts else None
    pending = PendingApproval(interrupt_id=first.id, proposal=first.value) if first else None
    values = dict(values)
    return RunOutcome(thread_id=thread_id, decision=values.get("decision"), pending=pending, values=values)
