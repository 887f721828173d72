"""A run's validated request from a symbol, the settings' defaults and the caller's overrides."""

from __future__ import annotations

from typing import Any

from state import Settings
from state.sections import RunRequest
from tools.timeframes import period


def make_request(settings: Settings, symbol: str, **overrides: Any) -> RunRequest:
    """A validated request with the settings' defaults (the clock is fixed when the run starts)."""
    fields: dict[str, Any] = {
        "symbol": symbol,
        "source": settings.source,
        "data_dir": str(settings.data_dir) if settings.data_dir else None,
        "exchange": settings.exchange,
        "timeframes": settings.timeframes,
        "decision_timeframe": settings.decision_timeframe,
        "approval_mode": settings.approval_mode,
    }
    fields.update({k: v for k, v in overrides.items() if v is not None})
    timeframes = fields["timeframes"]
    if "decision_timeframe" not in overrides or overrides["decision_timeframe"] is None:
        if fields["decision_timeframe"] not in timeframes:
            # The default decision timeframe was not asked for: trade the middle one of those that were.
            fields["decision_timeframe"] = sorted(timeframes, key=period)[len(timeframes) // 2]
    if fields.get("data_dir") and "source" not in {k for k, v in overrides.items() if v is not None}:
        fields["source"] = "files"  # a data directory means the files source unless told otherwise
    return RunRequest.model_validate(fields)
