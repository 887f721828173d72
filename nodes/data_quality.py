"""L1 data-quality gate: no analysis, and so no trade, on candles that cannot be trusted."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from nodes.common import end_run, event, services
from state import AnalysisState
from state.sections import Check, QualitySection, failed_checks
from tools.context import Services
from tools.indicators import MIN_CANDLES
from tools.quality import frame_checks, inspect

NODE = "data_quality"


async def data_quality(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    request, market = state["request"], state["market"]
    frames = services(runtime, request).frames
    checks: list[Check] = []
    repairs: list[str] = []
    for timeframe in market.timeframes:
        loaded = await frames.get(request.symbol, timeframe, market.as_of)
        # Named for their timeframe as they are made: a model_copy per check costs more than the check.
        # The candles' own checks are the frame's for as long as the cache hands it out; freshness is the clock's.
        prefix = f"{timeframe}."
        kept = loaded.derive(
            (NODE, MIN_CANDLES), lambda item: frame_checks(item.frame, timeframe, min_candles=MIN_CANDLES, prefix=prefix)
        )
        checks += inspect(loaded.frame, timeframe, market.as_of, min_candles=MIN_CANDLES, prefix=prefix, candle_checks=kept)
        repairs += [f"{timeframe}: {note}" for note in loaded.repairs]
    failed = failed_checks(checks)
    section = QualitySection(
        as_of=market.as_of, produced_by=NODE, passed=not failed, checks=checks, repairs=repairs
    )
    if failed:
        reason = "; ".join(f"{c.name} ({c.detail})" for c in failed)
        return end_run(NODE, "HOLD", f"data quality: {reason}", market.as_of, quality=section)
    detail = {"checks": len(checks), "repairs": repairs}
    return {"quality": section, "audit": [event(NODE, "ANALYSIS_UPDATE", "PASS", market.as_of, detail)]}
