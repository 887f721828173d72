"""L2 regime detection per timeframe from volatility-adjusted indicators."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from nodes.common import event, services
from state import AnalysisState
from state.sections import FeaturesSection, Regime, RegimeReport, TimeframeRegime
from tools.context import Services
from tools.frames import IndicatorFrame

NODE = "regime"
TREND_ADX = 20.0
SLOPE_BARS = 10
WIDTH_WINDOW = 100


def classify(loaded: IndicatorFrame) -> TimeframeRegime:
    frame = loaded.frame
    last = frame.iloc[-1]
    atr_pct = float(last["atr"] / last["close"] * 100)
    widths = frame["bb_width"].dropna().iloc[-WIDTH_WINDOW:]
    width_rank = float((widths <= widths.iloc[-1]).mean()) if len(widths) else 0.5
    atr_history = (frame["atr"] / frame["close"] * 100).dropna().iloc[-WIDTH_WINDOW:]
    slow = frame["ema_slow"].dropna()
    slope = float((slow.iloc[-1] / slow.iloc[-SLOPE_BARS - 1] - 1) * 100) if len(slow) > SLOPE_BARS else 0.0
    adx = float(last["adx"])
    regime: Regime
    # Volatility expansion trumps direction: bands at the top of their range and ATR double its norm.
    if width_rank >= 0.9 and len(atr_history) and atr_pct > 2 * float(atr_history.median()):
        regime = "VOLATILE"
    elif adx >= TREND_ADX and last["ema_fast"] > last["ema_slow"] and slope > 0:
        regime = "TRENDING_UP"
    elif adx >= TREND_ADX and last["ema_fast"] < last["ema_slow"] and slope < 0:
        regime = "TRENDING_DOWN"
    else:
        regime = "RANGING"
    return TimeframeRegime(
        regime=regime, adx=adx, atr_pct=atr_pct, bb_width_pct_rank=width_rank, ema_slope_pct=slope
    )


async def regime(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    request, market = state["request"], state["market"]
    frames = services(runtime, request).frames
    by_timeframe = {
        tf: classify(await frames.get(request.symbol, tf, market.as_of)) for tf in market.timeframes
    }
    primary_tf = request.decision_timeframe if request.decision_timeframe in by_timeframe else next(iter(by_timeframe))
    report = RegimeReport(
        as_of=market.as_of, produced_by=NODE, by_timeframe=by_timeframe, primary=by_timeframe[primary_tf].regime
    )
    detail = {tf: r.regime for tf, r in by_timeframe.items()}
    return {
        "features": FeaturesSection(regime=report),
        "audit": [event(NODE, "ANALYSIS_UPDATE", report.primary, market.as_of, detail)],
    }
