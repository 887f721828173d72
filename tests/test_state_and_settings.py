"""State reducers and settings parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from state import Settings, serializable_models
from state.lifecycle import merge_fields, merge_keyed
from state.sections import FeaturesSection, RegimeReport, RunRequest, Signal, StructureReport, TimeframeRegime

NOW = datetime(2026, 1, 5, tzinfo=UTC)


def test_timeframes_and_prefix_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AITRADER_TIMEFRAMES", "4h, 5m,1h")
    monkeypatch.setenv("AITRADER_APPROVAL_MODE", "always")
    monkeypatch.setenv("AITRADER_DATABASE_URL", "postgresql://x@h/db")
    settings = Settings(_env_file=None)
    assert settings.timeframes == ["5m", "1h", "4h"]
    assert settings.approval_mode == "always"
    assert settings.database_url == "postgresql://x@h/db"


def test_defaults_are_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AITRADER_TIMEFRAMES", "AITRADER_DATABASE_URL", "AITRADER_HOME"):
        monkeypatch.delenv(key, raising=False)
    settings = Settings(_env_file=None)
    assert settings.timeframes == ["5m", "15m", "1h", "4h", "1d", "1w"]
    assert settings.database_url is None and settings.sqlite_path.name == "aitrader.sqlite"
    assert settings.llm_model == "phi3:mini" and settings.risk_per_trade == 0.01


@pytest.mark.parametrize("key,value", [("AITRADER_TIMEFRAMES", "5m,7m"), ("AITRADER_RISK_PER_TRADE", "0.05"), ("AITRADER_APPROVAL_MODE", "sometimes")])
def test_bad_settings_are_refused(monkeypatch: pytest.MonkeyPatch, key: str, value: str) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError):
        Settings(_env_file=None)


def test_features_from_parallel_nodes_merge_field_by_field() -> None:
    regime = RegimeReport(
        as_of=NOW, produced_by="regime", primary="RANGING",
        by_timeframe={"1h": TimeframeRegime(regime="RANGING", adx=10, atr_pct=1, bb_width_pct_rank=0.5, ema_slope_pct=0)},
    )
    structure = StructureReport(as_of=NOW, produced_by="structure", by_timeframe={})
    merged = merge_fields(FeaturesSection(regime=regime), FeaturesSection(structure=structure))
    assert merged.regime == regime and merged.structure == structure
    # Order of arrival does not matter.
    assert merge_fields(FeaturesSection(structure=structure), FeaturesSection(regime=regime)) == merged


def test_signals_are_keyed_by_strategy() -> None:
    def signal(name: str) -> Signal:
        return Signal(as_of=NOW, produced_by=name, strategy=name, version="1", kind="momentum", direction="FLAT", confidence=0, timeframe="1h", rationale="-")

    merged = merge_keyed(merge_keyed(None, {"a": signal("a")}), {"b": signal("b")})
    assert set(merged) == {"a", "b"}


def test_every_section_is_on_the_serializer_allowlist() -> None:
    names = {model.__name__ for model in serializable_models()}
    assert {"MarketSection", "Signal", "DecisionSection", "AuditEvent", "RunRequest", "FeaturesSection"} <= names


@pytest.mark.parametrize("symbol", ["BTCUSDT", "btc/usdt/x", "", "B T C/USDT"])
def test_request_refuses_malformed_symbols(symbol: str) -> None:
    with pytest.raises(ValidationError):
        RunRequest(symbol=symbol, timeframes=["1h"], decision_timeframe="1h")


def test_request_needs_the_decision_timeframe_among_its_timeframes() -> None:
    with pytest.raises(ValidationError, match="decision timeframe"):
        RunRequest(symbol="BTC/USDT", timeframes=["5m", "1h"], decision_timeframe="4h")
    assert RunRequest(symbol="eth/usdt", timeframes=["1h"], decision_timeframe="1h").symbol == "ETH/USDT"
