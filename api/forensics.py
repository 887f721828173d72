"""Forensics on a run's checkpoints: the state at any step, what that step changed, and what-if forks.

A fork copies a checkpoint's state into a new thread (with the caller's
overrides) and runs on from there, on paper against a scratch book; the
original thread, its checkpoints and its orders are never touched.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from langgraph.types import StateUpdate
from pydantic import BaseModel

from api.audit_trail import jsonable
from api.runs import Lifecycles, RunNotFound, RunOutcome, new_thread_id
from state import Settings
from state.sections import ApprovalResponse, RunRequest

# Settings a what-if may change: the decision and risk knobs, never storage, credentials or live trading.
FORKABLE_SETTINGS = frozenset(
    {
        "approval_threshold_notional",
        "approval_ttl_seconds",
        "approval_max_drift",
        "account_equity",
        "risk_per_trade",
        "allow_short",
        "min_notional",
        "fee_rate",
        "slippage_bps",
        "max_portfolio_heat",
        "max_symbol_exposure",
        "max_tag_exposure",
        "max_direction_exposure",
        "correlation_scale_above",
        "correlation_reject_above",
        "volatility_target_atr_pct",
        "volatility_extreme_atr_pct",
        "drawdown_daily_limit",
        "drawdown_weekly_limit",
        "drawdown_monthly_limit",
        "entry_order_type",
        "llm_enabled",
    }
)
# Parts of the request a fork may change; the symbol, market and clock stay, or it would be another run.
FORKABLE_REQUEST = frozenset({"approval_mode", "operator_signals"})


class SectionChange(BaseModel):
    section: str
    change: Literal["added", "removed", "changed"]
    # field -> {"before": ..., "after": ...}; a list section reports what was appended.
    fields: dict[str, dict[str, Any]] = {}


class CheckpointDetail(BaseModel):
    thread_id: str
    checkpoint_id: str
    parent_checkpoint_id: str | None
    step: int
    created_at: str | None
    next: list[str]
    values: dict[str, Any]
    diff: list[SectionChange]


def _field_changes(before: Any, after: Any) -> dict[str, dict[str, Any]]:
    if isinstance(before, list) and isinstance(after, list):
        if after[: len(before)] == before:
            return {"appended": {"before": len(before), "after": after[len(before) :]}}
        return {"items": {"before": before, "after": after}}
    if isinstance(before, dict) and isinstance(after, dict):
        return {
            key: {"before": before.get(key), "after": after.get(key)}
            for key in sorted(set(before) | set(after))
            if before.get(key) != after.get(key)
        }
    return {"value": {"before": before, "after": after}}


def diff_sections(before: dict[str, Any], after: dict[str, Any]) -> list[SectionChange]:
    """Which sections a step added, removed or changed, down to the fields that differ."""
    changes = []
    for section in sorted(set(before) | set(after)):
        if section not in before:
            empty = {} if isinstance(after[section], dict) else None
            changes.append(SectionChange(section=section, change="added", fields=_field_changes(empty, after[section])))
        elif section not in after:
            changes.append(SectionChange(section=section, change="removed"))
        elif before[section] != after[section]:
            changes.append(SectionChange(section=section, change="changed", fields=_field_changes(before[section], after[section])))
    return changes


async def checkpoint_detail(runs: Lifecycles, thread_id: str, checkpoint_id: str) -> CheckpointDetail:
    snapshot = await checkpoint_snapshot(runs, thread_id, checkpoint_id)
    parent_id = (snapshot.parent_config or {}).get("configurable", {}).get("checkpoint_id")
    previous: dict[str, Any] = {}
    if parent_id:
        previous = jsonable(dict((await runs.graph.aget_state(runs._config(thread_id, parent_id))).values))
    values = jsonable(dict(snapshot.values))
    return CheckpointDetail(
        thread_id=thread_id,
        checkpoint_id=checkpoint_id,
        parent_checkpoint_id=parent_id,
        step=snapshot.metadata.get("step", -1),
        created_at=snapshot.created_at,
        next=list(snapshot.next),
        values=values,
        diff=diff_sections(previous, values),
    )


def forked_settings(settings: Settings, overrides: dict[str, Any]) -> Settings:
    refused = sorted(set(overrides) - FORKABLE_SETTINGS)
    if refused:
        raise ValueError(f"a fork cannot change {', '.join(refused)}; it may change: {', '.join(sorted(FORKABLE_SETTINGS))}")
    return settings.with_overrides(overrides)


async def checkpoint_snapshot(runs: Lifecycles, thread_id: str, checkpoint_id: str) -> Any:
    snapshot = await runs.graph.aget_state(runs._config(thread_id, checkpoint_id))
    if snapshot.config["configurable"].get("checkpoint_id") != checkpoint_id or snapshot.metadata is None:
        raise RunNotFound(f"no checkpoint {checkpoint_id!r} on run {thread_id!r}")
    return snapshot


async def check_fork(
    runs: Lifecycles, thread_id: str, checkpoint_id: str, request_overrides: dict[str, Any], settings_overrides: dict[str, Any]
) -> tuple[Any, RunRequest, Settings]:
    """Everything a fork would refuse, refused before it starts: unknown changes, a missing checkpoint."""
    refused = sorted(set(request_overrides) - FORKABLE_REQUEST)
    if refused:
        raise ValueError(f"a fork cannot change the request's {', '.join(refused)}; it may change: {', '.join(sorted(FORKABLE_REQUEST))}")
    settings = forked_settings(runs.settings, settings_overrides)
    snapshot = await checkpoint_snapshot(runs, thread_id, checkpoint_id)
    original = RunRequest.model_validate((await runs.outcome(thread_id)).values["request"])
    return snapshot, RunRequest.model_validate({**original.model_dump(), **request_overrides}), settings


async def fork(
    runs: Lifecycles,
    thread_id: str,
    checkpoint_id: str,
    *,
    request_overrides: dict[str, Any] | None = None,
    settings_overrides: dict[str, Any] | None = None,
    approval: ApprovalResponse | None = None,
    fork_thread_id: str | None = None,
) -> RunOutcome:
    """Run on from a copy of `checkpoint_id` in a new thread; with `approval`, answer its interrupt too."""
    snapshot, request, settings = await check_fork(runs, thread_id, checkpoint_id, request_overrides or {}, settings_overrides or {})
    new_id = fork_thread_id or new_thread_id(request.symbol)
    # Kept in every checkpoint's metadata, so a later resume of the fork trades as the fork would.
    metadata = {"parent_thread_id": thread_id, "forked_from": checkpoint_id, "fork_settings": settings_overrides or {}}
    config = {**runs._config(new_id), "metadata": metadata}
    services = dataclasses.replace(await runs.hub.scratch_for(request, thread_id=thread_id), settings=settings)
    await runs.storage.ledger.run_started(new_id, request.symbol, thread_id)
    writers = await _writers(runs, snapshot)
    if not writers:  # the input checkpoint: nothing ran yet, so the fork is a fresh start of the new request
        await runs._drive({"request": request}, config, services)
    else:
        values = {**dict(snapshot.values), "request": request}
        # Every node of the step is replayed as a writer, so the edges out of that step fire as they did.
        step = [StateUpdate(values, as_node=writers[0])] + [StateUpdate(None, as_node=w) for w in writers[1:]]
        await runs.graph.abulk_update_state(config, [step])
        await runs._drive(None, config, services)
    outcome = await runs.outcome(new_id)
    if approval is not None and outcome.pending is not None:
        outcome = await runs.resume(new_id, approval, services=services)
    return outcome


async def _writers(runs: Lifecycles, snapshot: Any) -> list[str]:
    parent = snapshot.parent_config
    if not parent or snapshot.metadata.get("step", -1) < 0:
        return []
    parent_snapshot = await runs.graph.aget_state(parent)
    return sorted({task.name for task in parent_snapshot.tasks if task.name != "__start__"})
