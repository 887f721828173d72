"""The scanner's state: a watchlist in, one entry per symbol out, ranked.

A scan is its own (small) LangGraph thread; each symbol it decides is a
trade-lifecycle thread of its own, named in the symbol's entry.
"""

from __future__ import annotations

import operator
from datetime import datetime
from typing import Annotated, Any, Literal, TypedDict

from pydantic import Field, model_validator

from state.base import Model
from state.settings import ApprovalMode, DataSource

EntryStatus = Literal["decided", "paused", "failed", "skipped", "invalid"]
# The `aitrader run` options a scan applies to every symbol (the API's list bodies take the same).
RUN_OPTIONS = frozenset({"source", "scenario", "data_dir", "exchange", "timeframes", "decision_timeframe", "approval_mode", "as_of"})


class ScanRequest(Model):
    """What to scan and how. Either `symbols` or `top`; unset run options take the settings' defaults."""

    scan_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    symbols: list[str] | None = Field(default=None, min_length=1, max_length=10_000)
    top: int | None = Field(default=None, ge=1, le=10_000, description="the N most traded active spot markets")
    quote: str = Field(default="USDT", pattern=r"^[A-Z0-9]{2,10}$")
    min_quote_volume: float = Field(default=0.0, ge=0.0, description="24h quote volume floor for `top`")
    as_of: datetime | None = Field(default=None, description="decide every symbol at this moment (None: now)")
    # Per-symbol run options, as `aitrader run` takes them.
    source: DataSource | None = None
    scenario: str | None = None
    data_dir: str | None = None
    exchange: str | None = None
    timeframes: list[str] | None = None
    decision_timeframe: str | None = None
    approval_mode: ApprovalMode | None = None

    @model_validator(mode="after")
    def _one_watchlist(self) -> ScanRequest:
        if (self.symbols is None) == (self.top is None):
            raise ValueError("give either a list of symbols or `top` N")
        return self

    def run_options(self) -> dict[str, Any]:
        """The options every symbol's RunRequest is built with."""
        return self.model_dump(include=set(RUN_OPTIONS), exclude_none=True)


class ScanEntry(Model):
    """One symbol's outcome in a scan."""

    symbol: str
    thread_id: str | None = None
    status: EntryStatus
    decision: str | None = None  # BUY / SELL / HOLD / REJECT, or None when the run did not get there
    stage: str | None = None  # the node that decided
    reason: str = ""
    consensus: str | None = None  # the aggregator's direction: LONG, SHORT or FLAT
    confidence: float | None = None
    score: float | None = None  # the aggregator's net score
    # The strategies agreed on a trade strong enough to pass the aggregator (the run went on to verification).
    actionable: bool = False
    elapsed_ms: float | None = None
    worker: str | None = None  # which process decided it (pid@host)


class ScanSummary(Model):
    scan_id: str
    as_of: datetime | None  # None: each symbol at its own newest candle (the files source)
    ranked: list[ScanEntry]
    counts: dict[str, int]
    halted: bool = False
    halt_reason: str = ""


def rank_key(entry: ScanEntry) -> tuple[int, int, float, str]:
    """Actionable consensus first (strongest first), then decided holds, paused, skipped, failed, invalid."""
    order = {"decided": 1, "paused": 1, "skipped": 2, "failed": 3, "invalid": 4}
    return (0 if entry.actionable else order[entry.status], 0 if entry.decision in ("BUY", "SELL") else 1, -(entry.confidence or 0.0), entry.symbol)


class ScanState(TypedDict, total=False):
    request: ScanRequest
    as_of: datetime | None
    watchlist: list[str]
    # One entry per symbol, appended by the parallel per-symbol tasks.
    results: Annotated[list[ScanEntry], operator.add]
    summary: ScanSummary


class SymbolTask(TypedDict):
    """What one per-symbol branch of the scan gets (a Send payload)."""

    request: ScanRequest
    as_of: datetime | None
    symbol: str
