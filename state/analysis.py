"""The analyst's map: the sections the feature (L2) and level (L3) agents write.

Each agent owns one field of `FeaturesSection` or `LevelsSection`, so parallel
agents merge field by field (see `state.lifecycle.merge_fields`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from state.base import Bias, Model, Regime, Section


class TimeframeRegime(Model):
    regime: Regime
    adx: float
    atr_pct: float
    bb_width_pct_rank: float
    ema_slope_pct: float


class RegimeReport(Section):
    by_timeframe: dict[str, TimeframeRegime]
    primary: Regime
    previous: Regime | None = None  # the primary regime of this symbol's previous run


class TimeframeStructure(Model):
    bias: Bias
    sequence: list[str]
    last_swing_high: float | None
    last_swing_low: float | None
    break_of_structure: Literal["UP", "DOWN"] | None


class StructureReport(Section):
    by_timeframe: dict[str, TimeframeStructure]


class KeyLevel(Model):
    name: str  # daily_open, weekly_open, monthly_open, prev_day_high, prev_week_low, ...
    price: float
    position: Literal["above", "below", "at"]  # where the last price sits relative to the level
    distance_pct: float  # (last price - level) / level * 100


class KeyLevelsReport(Section):
    source_timeframe: str
    levels: list[KeyLevel]


class VolumeProfile(Model):
    start: datetime
    end: datetime
    candles: int
    point_of_control: float
    value_area_high: float
    value_area_low: float


class WeisWave(Model):
    direction: Literal["UP", "DOWN"]
    start: datetime
    end: datetime
    volume: float
    price_change: float


class TimeframeVolume(Model):
    obv_slope: float  # OBV change over the divergence window, in units of average volume
    obv_divergence: Literal["BULLISH", "BEARISH"] | None
    profile: VolumeProfile
    previous_profile: VolumeProfile | None
    poc_shift_pct: float | None
    waves: list[WeisWave]


class VolumeReport(Section):
    by_timeframe: dict[str, TimeframeVolume]


class VwapProjection(Model):
    candles_ahead: int
    mean: float
    lower: float
    upper: float


class AnchoredVwap(Model):
    anchor_kind: Literal["swing_high", "swing_low"]
    anchor_time: datetime
    anchor_price: float
    value: float
    projection: list[VwapProjection]
    kernel: str  # this projection's fitted kernel, stated so a reader can judge the band


class TimeframeVwaps(Model):
    kernel: str  # the form of the regression behind every projection
    vwaps: list[AnchoredVwap]


class AnchoredVwapReport(Section):
    by_timeframe: dict[str, TimeframeVwaps]


class AlternativeDataReport(Section):
    """Sentiment / on-chain inputs; `available=False` says none were configured, rather than inventing any."""

    available: bool
    providers: list[str]
    values: dict[str, float] = {}
    note: str = ""


class FeaturesSection(Model):
    """Written by the parallel L2 nodes, each owning one field."""

    regime: RegimeReport | None = None
    structure: StructureReport | None = None
    key_levels: KeyLevelsReport | None = None
    volume: VolumeReport | None = None
    alternative: AlternativeDataReport | None = None


class PriceLevel(Model):
    price: float
    kind: str
    strength: float = 1.0
    timeframe: str


class SupportResistanceReport(Section):
    levels: list[PriceLevel]


class FibonacciLevels(Model):
    swing_low: float
    swing_high: float
    direction: Literal["UP", "DOWN"]  # of the impulse being retraced
    retracements: dict[str, float]
    golden_pocket: tuple[float, float]
    in_golden_pocket: bool


class FibonacciReport(Section):
    by_timeframe: dict[str, FibonacciLevels]  # timeframes without a confirmed impulse are absent


class ConfluenceZone(Model):
    low: float
    high: float
    score: float
    contributors: list[str]


class ConfluenceReport(Section):
    tolerance: float
    zones: list[ConfluenceZone]


class LevelsSection(Model):
    """Written by the parallel L3 nodes and then the confluence node."""

    support_resistance: SupportResistanceReport | None = None
    fibonacci: FibonacciReport | None = None
    anchored_vwap: AnchoredVwapReport | None = None
    confluence: ConfluenceReport | None = None
