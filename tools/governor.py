"""L0: the governor's kill switch, strategy disables and capital budget, shared by every run.

The flags live in the database, so a halt set from the CLI, the API or a
tripped breaker is seen by every run in every process at its next risk or
execution check. A halt also cancels entries still resting at a broker;
protective stops of open positions stay, because pulling them would leave the
positions naked.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from pydantic import BaseModel

from state.portfolio import GovernorState, Position
from tools.audit_log import AuditLog, AuditRecord
from tools.brokers.base import Broker
from tools.ledger import Ledger

GOVERNOR_THREAD = "governor"


class HaltOutcome(BaseModel):
    state: GovernorState
    cancelled: list[Position]
    left: list[str]  # pending brackets no broker here could cancel, with the reason


class Governor:
    def __init__(self, ledger: Ledger, audit: AuditLog | None = None) -> None:
        self._ledger = ledger
        self._audit = audit

    async def state(self) -> GovernorState:
        return await self._ledger.governor()

    async def halt(self, reason: str, by: str, brokers: Mapping[str, Broker]) -> HaltOutcome:
        if not reason.strip():
            raise ValueError("a halt needs a reason")
        current = await self._ledger.governor()
        halted = current.model_copy(update={"halted": True, "reason": reason, "changed_by": by, "changed_at": datetime.now(UTC)})
        await self._ledger.save_governor(halted)  # first: new orders stop before anything is cancelled
        cancelled, left = [], []
        for position in await self._ledger.positions(statuses=("pending",)):
            broker = brokers.get(position.broker)
            if broker is None:
                left.append(f"{position.bracket_id} at {position.broker}: no such broker configured in this process")
                continue
            try:
                cancelled.append(await broker.cancel(position, "halt"))
            except Exception as error:  # one broker failing must not keep the halt from the others
                left.append(f"{position.bracket_id} at {position.broker}: {error}")
        await self._record("HALT", by, {"reason": reason, "cancelled": [p.bracket_id for p in cancelled], "left": left})
        return HaltOutcome(state=halted, cancelled=cancelled, left=left)

    async def resume(self, by: str, reason: str = "") -> GovernorState:
        current = await self._ledger.governor()
        resumed = current.model_copy(update={"halted": False, "reason": reason, "changed_by": by, "changed_at": datetime.now(UTC)})
        await self._ledger.save_governor(resumed)
        await self._record("RESUME", by, {"reason": reason, "was": current.reason})
        return resumed

    async def set_strategy(self, strategy: str, *, enabled: bool, by: str, reason: str = "") -> GovernorState:
        current = await self._ledger.governor()
        disabled = dict(current.disabled_strategies)
        if enabled:
            disabled.pop(strategy, None)
        else:
            disabled[strategy] = reason or f"disabled by {by}"
        updated = current.model_copy(update={"disabled_strategies": disabled, "changed_by": by, "changed_at": datetime.now(UTC)})
        await self._ledger.save_governor(updated)
        await self._record("ENABLE" if enabled else "DISABLE", by, {"strategy": strategy, "reason": reason})
        return updated

    async def set_budget(self, budget: float | None, *, by: str) -> GovernorState:
        current = await self._ledger.governor()
        updated = GovernorState.model_validate(
            {**current.model_dump(), "capital_budget": budget, "changed_by": by, "changed_at": datetime.now(UTC)}
        )
        await self._ledger.save_governor(updated)
        await self._record("BUDGET", by, {"capital_budget": budget})
        return updated

    async def _record(self, verdict: str, by: str, payload: dict[str, object]) -> None:
        if self._audit is not None:
            record = AuditRecord(thread_id=GOVERNOR_THREAD, node="governor", event="SYS_COMMAND", verdict=verdict, payload={"by": by, **payload})
            await self._audit.append([record])
