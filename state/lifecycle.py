"""`AnalysisState`: the per-symbol blackboard, and the reducers that let parallel writers merge."""

from __future__ import annotations

import operator
from typing import Annotated, TypedDict, TypeVar

from pydantic import BaseModel

from state import analysis, base, portfolio, scan
from state import sections as s

ModelT = TypeVar("ModelT", bound=BaseModel)


def merge_fields(left: ModelT | None, right: ModelT | None) -> ModelT | None:
    """Parallel nodes each fill their own field of one container section."""
    if left is None:
        return right
    if right is None:
        return left
    filled = {name: value for name, value in right if value is not None}
    return left.model_copy(update=filled)


def merge_keyed(left: dict[str, s.Signal] | None, right: dict[str, s.Signal] | None) -> dict[str, s.Signal]:
    """Signals are keyed by strategy, so branches never overwrite each other."""
    return {**(left or {}), **(right or {})}


class AnalysisState(TypedDict, total=False):
    request: s.RunRequest
    sanity: s.SanitySection
    market: s.MarketSection
    quality: s.QualitySection
    features: Annotated[s.FeaturesSection, merge_fields]
    levels: Annotated[s.LevelsSection, merge_fields]
    signals: Annotated[dict[str, s.Signal], merge_keyed]
    consensus: s.ConsensusSection
    verification: s.VerificationSection
    risk: s.RiskSection
    approval: s.ApprovalSection
    orders: s.OrdersSection
    decision: s.DecisionSection
    audit: Annotated[list[s.AuditEvent], operator.add]


class StrategyTask(TypedDict):
    """What one strategy branch receives through `Send`: no broker, no orders."""

    strategy: str
    request: s.RunRequest
    market: s.MarketSection
    features: s.FeaturesSection


def serializable_models() -> list[type[BaseModel]]:
    """Every model that may appear in a checkpoint, for the serializer's allowlist."""
    return [
        value
        for module in (base, analysis, portfolio, s, scan)
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, BaseModel) and value.__module__ == module.__name__
    ]
