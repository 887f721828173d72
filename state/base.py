"""What every section shares: frozen models stamped with as_of, producer and schema version."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

SCHEMA_VERSION = 1

Direction = Literal["LONG", "SHORT", "FLAT"]
Regime = Literal["TRENDING_UP", "TRENDING_DOWN", "RANGING", "VOLATILE"]
Bias = Literal["BULLISH", "BEARISH", "NEUTRAL"]
EventType = Literal[
    "SYS_COMMAND",
    "MARKET_DATA",
    "ANALYSIS_UPDATE",
    "REGIME_CHANGE",
    "STRATEGY_SIGNAL",
    "SIGNAL",
    "VERIFIED_SIG",
    "APPROVED_ORD",
    "ORDER_REQUEST",
    "ORDER_FILLED",
    "DECISION",
]


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Section(Model):
    as_of: datetime
    produced_by: str
    schema_version: int = SCHEMA_VERSION
