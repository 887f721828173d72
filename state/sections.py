"""The owned sections of `AnalysisState`.

Every section is a frozen pydantic model stamped with the candle time it was
computed from (`as_of`), the node that produced it and a schema version, so a
reader can tell stale or foreign data apart. Raw candles never appear here.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from state.analysis import (  # noqa: F401  re-exported: one import path for every section
    AlternativeDataReport,
    AnchoredVwap,
    AnchoredVwapReport,
    ConfluenceReport,
    ConfluenceZone,
    FeaturesSection,
    FibonacciLevels,
    FibonacciReport,
    KeyLevel,
    KeyLevelsReport,
    LevelsSection,
    PriceLevel,
    RegimeReport,
    StructureReport,
    SupportResistanceReport,
    TimeframeRegime,
    TimeframeStructure,
    TimeframeVolume,
    TimeframeVwaps,
    VolumeProfile,
    VolumeReport,
    VwapProjection,
    WeisWave,
)
from state.base import (  # noqa: F401  re-exported with the analysis sections
    SCHEMA_VERSION,
    Bias,
    Direction,
    EventType,
    Model,
    Regime,
    Section,
)
from state.portfolio import Order, Position  # noqa: F401  re-exported: orders appear in the orders section
from state.settings import KNOWN_TIMEFRAMES, ApprovalMode, DataSource

SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]{1,20}/[A-Z0-9]{2,10}(:[A-Z0-9]{2,10})?$")


class Check(Model):
    """One rule's outcome; ``passed=None`` means the rule did not apply."""

    name: str
    passed: bool | None
    detail: str = ""


def failed_checks(checks: list[Check]) -> list[Check]:
    return [check for check in checks if check.passed is False]


class OperatorSignal(Model):
    """A signal an operator injects into a run; it goes through aggregation, verification and risk."""

    direction: Literal["LONG", "SHORT"]
    confidence: float = Field(ge=0.0, le=1.0)
    rationale: str = Field(min_length=3, max_length=1000)
    by: str = Field(default="operator", min_length=1, max_length=100)
    stop: float | None = Field(default=None, gt=0)
    target: float | None = Field(default=None, gt=0)


class RunRequest(Model):
    """What the caller asked for: the run's input, validated at the boundary."""

    symbol: str
    source: DataSource = "builtin"
    scenario: str | None = None
    data_dir: str | None = None
    exchange: str = "binance"
    timeframes: list[str]
    decision_timeframe: str
    approval_mode: ApprovalMode = "observe"
    as_of: datetime | None = Field(default=None, description="Decide at this moment; None = now.")
    operator_signals: list[OperatorSignal] = Field(default_factory=list, max_length=10)
    # "live" also needs AITRADER_LIVE_TRADING=true and keys; replays and forks trade on paper regardless.
    broker: Literal["paper", "live"] = "paper"

    @field_validator("symbol")
    @classmethod
    def _symbol_format(cls, value: str) -> str:
        symbol = value.strip().upper()
        if not SYMBOL_PATTERN.match(symbol):
            raise ValueError(f"malformed symbol {value!r}: expected BASE/QUOTE such as BTC/USDT")
        return symbol

    @field_validator("timeframes")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [tf for tf in value if tf not in KNOWN_TIMEFRAMES]
        if unknown or not value:
            raise ValueError(f"unknown timeframes {unknown}; known: {', '.join(KNOWN_TIMEFRAMES)}")
        return sorted(set(value), key=KNOWN_TIMEFRAMES.index)

    @model_validator(mode="after")
    def _coherent(self) -> RunRequest:
        if self.decision_timeframe not in self.timeframes:
            raise ValueError(f"decision timeframe {self.decision_timeframe} is not among {self.timeframes}")
        if self.source == "files" and not self.data_dir:
            raise ValueError("the files source needs a data directory")
        if self.scenario is not None and self.source != "builtin":
            raise ValueError("a scenario only exists for the built-in source")
        return self


class SanitySection(Section):
    passed: bool
    checks: list[Check]


class SanityVerdict(Model):
    """The LLM's structured answer; advisory, and only ever able to make the verdict stricter."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    tradable: bool
    category: Literal["ok", "leveraged_token", "derivative", "stablecoin_pair", "suspicious", "other"]
    reason: str = Field(max_length=500)
    confidence: float = Field(ge=0.0, le=1.0)


class CandleSummary(Model):
    count: int
    first: datetime
    last: datetime
    last_close: float


class MarketSection(Section):
    symbol: str
    exchange: str
    source: str
    scenario: str | None
    timeframes: dict[str, CandleSummary]
    dropped: dict[str, str] = {}
    last_price: float


class QualitySection(Section):
    passed: bool
    checks: list[Check]
    repairs: list[str] = []


class Signal(Section):
    strategy: str
    version: str
    kind: str
    direction: Direction
    confidence: float = Field(ge=0.0, le=1.0)
    entry: float | None = None
    stop: float | None = None
    targets: list[float] = []
    timeframe: str
    rationale: str
    error: str | None = None
    # A shadow version is recorded beside the live one but carries no weight in the consensus.
    shadow: bool = False
    # How often the strategy starts a new signal lately vs over its whole history, and how often
    # it flipped side lately: the verifier's anomaly check reads these.
    recent_rate: float | None = None
    historical_rate: float | None = None
    recent_flips: int | None = None
    # Historical analogs: how this strategy's past signals on this chart played out (backtested).
    analog_trades: int | None = None
    analog_win_rate: float | None = None  # past signals in today's direction
    overall_win_rate: float | None = None  # all its past signals: the norm


class ConsensusSection(Section):
    direction: Direction
    net_score: float
    confidence: float
    weights: dict[str, float]
    contributions: dict[str, float]
    agreeing: list[str]
    entry: float | None = None
    stop: float | None = None
    targets: list[float] = []
    timeframe: str
    reason: str
    # Why each weight is what it is: the regime factor and the track-record factor per strategy.
    regime_factors: dict[str, float] = {}
    performance_factors: dict[str, float] = {}
    kelly_fraction: float | None = None  # quarter-Kelly risk proposal, capped; risk takes the smaller


class RationaleAudit(Model):
    """The LLM's reading of the agreeing strategies' evidence; advisory, it can only object."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    consistent: bool
    concerns: list[str] = Field(default_factory=list, max_length=10)
    confidence: float = Field(ge=0.0, le=1.0)


class StrategyTrackRecord(Model):
    """A strategy version's backtested trailing performance, kept in the graph's store."""

    sharpe: float
    win_rate: float = Field(ge=0.0, le=1.0)
    payoff: float = Field(gt=0.0)  # average win / average loss
    trades: int = Field(ge=0)


class VerificationSection(Section):
    passed: bool
    checks: list[Check]


class RiskAssessment(Model):
    """What the risk rules decided and every figure they decided on (fractions are of equity)."""

    approved: bool
    checks: list[Check]
    quantity: float | None = None
    notional: float | None = None
    risk_amount: float | None = None
    risk_fraction: float | None = None  # the fraction finally risked, after every multiplier
    heat_before: float | None = None
    heat_after: float | None = None
    # Why the size is what it is: volatility, correlation, heat and exposure room, each in (0, 1].
    multipliers: dict[str, float] = {}
    # Notional after the trade: "symbol:BTC/USDT", "tag:meme", "direction:buy".
    exposure_after: dict[str, float] = {}
    drawdowns: dict[str, float] = {}


class RiskSection(Section):
    approved: bool
    checks: list[Check]
    side: Literal["buy", "sell"] | None = None
    entry: float | None = None
    stop: float | None = None
    target: float | None = None
    quantity: float | None = None
    notional: float | None = None
    risk_amount: float | None = None
    risk_fraction: float | None = None
    equity: float
    heat_before: float | None = None
    heat_after: float | None = None
    multipliers: dict[str, float] = {}
    exposure_after: dict[str, float] = {}
    drawdowns: dict[str, float] = {}
    tags: list[str] = []
    # Agreeing strategy versions with no live trade yet: the threshold approval mode asks a human.
    first_trade_strategies: list[str] = []
    decided_at: datetime | None = None  # wall time: a pending approval expires counted from here


class ApprovalSection(Section):
    mode: ApprovalMode
    required: bool
    status: Literal["auto_approved", "approved", "rejected", "modified", "expired"]
    by: str
    at: datetime
    reason: str
    quantity: float
    stop: float | None = None  # a stop the operator widened; None = the one risk sized
    # Every order of the approved bracket derives from this: thread + the approval task, stable
    # across interrupt, resume, retry and a crashed-and-restarted process.
    order_key: str | None = None


class OrdersSection(Section):
    broker: str
    orders: list[Order]
    position: Position | None = None


class ApprovalRequest(Model):
    """What the approval interrupt shows the operator."""

    thread_id: str | None
    symbol: str
    side: Literal["buy", "sell"]
    quantity: float
    entry: float
    stop: float
    target: float
    notional: float
    risk_amount: float
    reasons: list[str]
    strategies: list[str]
    regime: str | None
    reference_price: float | None = None  # the last price the decision saw; drift is measured from it
    expires_at: datetime | None = None
    risk_fraction: float | None = None
    heat_after: float | None = None
    consensus: str = ""  # the aggregator's reason
    checks: list[Check] = []  # verification and risk checks, the evidence behind the proposal


class ApprovalResponse(Model):
    """What an operator may answer; anything else is refused before the graph resumes."""

    action: Literal["approve", "reject", "modify"]
    by: str = Field(default="operator", min_length=1, max_length=100)
    reason: str = Field(default="", max_length=1000)
    quantity: float | None = Field(default=None, gt=0)  # modify: a smaller size
    stop: float | None = Field(default=None, gt=0)  # modify: a wider stop, re-checked by risk

    @model_validator(mode="after")
    def _modify_needs_a_change(self) -> ApprovalResponse:
        if self.action == "modify" and self.quantity is None and self.stop is None:
            raise ValueError("modify needs a smaller quantity or a wider stop")
        return self


class DecisionSection(Section):
    action: Literal["BUY", "SELL", "HOLD", "REJECT"]
    stage: str
    reason: str


class AuditEvent(Section):
    event: EventType
    verdict: str
    detail: dict[str, Any] = {}
    recorded_at: datetime


def is_finite(*numbers: float | None) -> bool:
    return all(n is not None and math.isfinite(n) for n in numbers)
