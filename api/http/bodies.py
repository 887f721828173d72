"""Request bodies of the HTTP API: validated before anything reaches a run."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from state.settings import ApprovalMode, DataSource
from state.sections import ApprovalResponse, OperatorSignal


class Body(BaseModel):
    # An unknown field is a typo the caller should hear about, not a setting silently ignored.
    model_config = ConfigDict(extra="forbid")


class StartRuns(Body):
    """One symbol or a list; every option the CLI's `run` has. Unset options take the server's settings."""

    symbol: str | None = None
    symbols: list[str] | None = Field(default=None, min_length=1, max_length=100)
    source: DataSource | None = None
    exchange: str | None = None
    data_dir: str | None = None
    scenario: str | None = None
    approval_mode: ApprovalMode | None = None
    timeframes: list[str] | None = None
    decision_timeframe: str | None = None
    as_of: datetime | None = None
    operator_signals: list[OperatorSignal] | None = None
    broker: Literal["paper", "live"] | None = None
    thread_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._:-]{1,128}$")

    @model_validator(mode="after")
    def _one_way_to_name_symbols(self) -> StartRuns:
        if (self.symbol is None) == (self.symbols is None):
            raise ValueError("give either `symbol` or `symbols`")
        if self.thread_id and self.symbols and len(self.symbols) > 1:
            raise ValueError("`thread_id` names one run; it cannot be used with several symbols")
        return self

    @property
    def names(self) -> list[str]:
        return [self.symbol] if self.symbol is not None else list(self.symbols or [])

    def overrides(self) -> dict[str, Any]:
        return self.model_dump(exclude={"symbol", "symbols", "thread_id"}, exclude_none=True)


class Resume(Body, ApprovalResponse):
    """An operator's answer to the pending approval; `interrupt_id` pins it to the interrupt the operator saw."""

    interrupt_id: str | None = Field(default=None, description="Refused with 409 unless this interrupt is pending.")

    def response(self, operator: str | None) -> ApprovalResponse:
        # An authenticated operator header names who decided; otherwise the body's `by` does.
        by = operator or self.by
        return ApprovalResponse.model_validate({**self.model_dump(exclude={"interrupt_id"}), "by": by})


class Replay(Body):
    """Re-run from a checkpoint in place, or fork it into a new thread with what-if changes."""

    checkpoint_id: str
    fork: bool = False
    request: dict[str, Any] = Field(default_factory=dict, description="Fork only: approval_mode, operator_signals.")
    settings: dict[str, Any] = Field(default_factory=dict, description="Fork only: risk and approval settings to change.")
    approval: ApprovalResponse | None = Field(default=None, description="Fork only: answer the fork's approval with this.")

    @model_validator(mode="after")
    def _what_if_needs_a_fork(self) -> Replay:
        if not self.fork and (self.request or self.settings or self.approval):
            raise ValueError("request, settings and approval changes need `fork: true` (a replay re-runs as it was)")
        return self


class InjectSignal(Body, OperatorSignal):
    """An operator's own signal, run through a new lifecycle of the same symbol as a further strategy."""

    approval_mode: ApprovalMode | None = None


class Halt(Body):
    reason: str = Field(min_length=1, max_length=500)


class GovernorResume(Body):
    reason: str = Field(default="", max_length=500)
