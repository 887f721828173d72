"""L2 regime detection per timeframe from volatility-adjusted indicators."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore

from nodes.common import event, services
from state import AnalysisState
from state.sections import FeaturesSection, Regime, RegimeReport, RunRequest, TimeframeRegime
from tools.context import Services
from tools.frames import IndicatorFrame
from tools.indicators import column_arrays

NODE = "regime"
TREND_ADX = 20.0
SLOPE_BARS = 10
WIDTH_WINDOW = 100


def _defined(values: np.ndarray) -> np.ndarray:
    """`Series.dropna()` of a float array."""
    return values[~np.isnan(values)]


def _last_defined(values: np.ndarray, count: int) -> np.ndarray:
    """`_defined(values)[-count:]`, reading only the tail when it holds no NaN (NaN is warm-up, at the start)."""
    tail = values[-count:]
    return tail if len(tail) == count and not np.isnan(tail).any() else _defined(values)[-count:]


def classify(loaded: IndicatorFrame) -> TimeframeRegime:
    # numpy arrays, not Series: this runs for every timeframe of every run, on the last ~100 values.
    close, atr, width, fast, slow_all, adx_all = column_arrays(
        loaded.frame, "close", "atr", "bb_width", "ema_fast", "ema_slow", "adx"
    )
    atr_pct = float(atr[-1] / close[-1] * 100)
    widths = _last_defined(width, WIDTH_WINDOW)
    # count / n is the mean of the 0/1 outcomes exactly (an integer sum, one division), without np.mean's bookkeeping.
    width_rank = int(np.count_nonzero(widths <= widths[-1])) / len(widths) if len(widths) else 0.5
    with np.errstate(divide="ignore", invalid="ignore"):
        # Elementwise: the tail's ratios are those of the whole columns' tail.
        atr_history = _last_defined(atr[-WIDTH_WINDOW:] / close[-WIDTH_WINDOW:] * 100, WIDTH_WINDOW)
        if len(atr_history) < WIDTH_WINDOW:  # NaN in the tail: earlier defined ratios fill the window
            atr_history = _defined(atr / close * 100)[-WIDTH_WINDOW:]
    slow = _last_defined(slow_all, SLOPE_BARS + 1)  # the slope reads slow[-1] and slow[-SLOPE_BARS - 1] only
    slope = float((slow[-1] / slow[-SLOPE_BARS - 1] - 1) * 100) if len(slow) > SLOPE_BARS else 0.0
    adx = float(adx_all[-1])
    return TimeframeRegime(
        regime=label(width_rank, atr_pct, atr_history, adx, fast[-1], slow_all[-1], slope),
        adx=adx,
        atr_pct=atr_pct,
        bb_width_pct_rank=width_rank,
        ema_slope_pct=slope,
    )


def label(width_rank: float, atr_pct: float, atr_history: np.ndarray, adx: float, fast: float, slow: float, slope: float) -> Regime:
    """The regime these readings describe (`fast`, `slow`: the newest EMAs)."""
    # Volatility expansion trumps direction: bands at the top of their range and ATR double its norm.
    if width_rank >= 0.9 and len(atr_history) and atr_pct > 2 * float(np.median(atr_history)):
        return "VOLATILE"
    if adx >= TREND_ADX and fast > slow and slope > 0:
        return "TRENDING_UP"
    if adx >= TREND_ADX and fast < slow and slope < 0:
        return "TRENDING_DOWN"
    return "RANGING"


async def remember(store: BaseStore | None, request: RunRequest, as_of: datetime, primary: Regime) -> Regime | None:
    """The symbol's regime at its previous run, and this run's regime kept for the next one.

    A replay of the same moment sees the same "previous" as the original run; a
    replay of an older moment neither sees nor overwrites newer memory.
    """
    if store is None:
        return None
    namespace, key = ("regime", request.source, request.exchange), request.symbol
    item = await store.aget(namespace, key)
    stored = item.value if item else None
    if stored and stored["as_of"] == as_of.isoformat():
        return stored["before"]
    if stored and stored["as_of"] > as_of.isoformat():
        return None
    before = stored["primary"] if stored else None
    await store.aput(namespace, key, {"primary": primary, "as_of": as_of.isoformat(), "before": before})
    return before


async def regime(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    request, market = state["request"], state["market"]
    frames = services(runtime, request).frames
    by_timeframe = {
        tf: (await frames.get(request.symbol, tf, market.as_of)).derive(NODE, classify) for tf in market.timeframes
    }
    primary_tf = request.decision_timeframe if request.decision_timeframe in by_timeframe else next(iter(by_timeframe))
    primary = by_timeframe[primary_tf].regime
    previous = await remember(runtime.store, request, market.as_of, primary)
    report = RegimeReport(
        as_of=market.as_of, produced_by=NODE, by_timeframe=by_timeframe, primary=primary, previous=previous
    )
    detail = {tf: r.regime for tf, r in by_timeframe.items()}
    events = [event(NODE, "ANALYSIS_UPDATE", report.primary, market.as_of, detail)]
    if previous is not None and previous != primary:
        events.append(event(NODE, "REGIME_CHANGE", f"{previous} -> {primary}", market.as_of, {"timeframe": primary_tf}))
    return {"features": FeaturesSection(regime=report), "audit": events}
