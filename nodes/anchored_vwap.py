"""L3 anchored VWAPs from each timeframe's most significant recent swings, with a GP projection of each."""

from __future__ import annotations

import math
from typing import Any

from langgraph.runtime import Runtime

from nodes.common import event, services
from state import AnalysisState
from state.analysis import (
    AnchoredVwap,
    AnchoredVwapReport,
    LevelsSection,
    TimeframeVwaps,
)
from tools import avwap
from tools.context import Services
from tools.frames import IndicatorFrame

NODE = "anchored_vwap"


def timeframe_vwaps(loaded: IndicatorFrame) -> TimeframeVwaps:
    candles = avwap.Candles.of(loaded.frame)  # the columns once, for every anchor and VWAP below
    paths = [(anchor, candles.vwap(anchor.position)) for anchor in avwap.choose_anchors_in(candles)]
    # No volume traded since the anchor (a NaN last value): there is no VWAP to report.
    reported = [(anchor, path) for anchor, path in paths if not math.isnan(path[-1])]
    projections = avwap.project_vwaps([path for _, path in reported])  # fitted together, each to its own numbers
    vwaps = [
        AnchoredVwap(
            anchor_kind=anchor.kind,
            anchor_time=anchor.time.to_pydatetime(),
            anchor_price=anchor.price,
            value=float(path[-1]),
            projection=projection.points,
            kernel=projection.kernel,
        )
        for (anchor, path), projection in zip(reported, projections, strict=True)
    ]
    return TimeframeVwaps(kernel=avwap.KERNEL_FORM, vwaps=vwaps)


async def anchored_vwap(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    request, market = state["request"], state["market"]
    frames = services(runtime, request).frames
    loaded = {tf: await frames.get(request.symbol, tf, market.as_of) for tf in market.timeframes}
    by_timeframe = {}
    # The BLAS thread limit once for every timeframe; no await inside it (see one_blas_thread).
    with avwap.one_blas_thread():
        # The longest analyst: a progress report per timeframe reaches the run's event stream.
        for done, tf in enumerate(market.timeframes, start=1):
            by_timeframe[tf] = timeframe_vwaps(loaded[tf])
            runtime.stream_writer({"node": NODE, "stage": "projections", "timeframe": tf, "done": done, "total": len(loaded)})
    report = AnchoredVwapReport(as_of=market.as_of, produced_by=NODE, by_timeframe=by_timeframe)
    count = sum(len(v.vwaps) for v in by_timeframe.values())
    return {
        "levels": LevelsSection(anchored_vwap=report),
        "audit": [event(NODE, "ANALYSIS_UPDATE", f"{count} anchored VWAPs", market.as_of)],
    }

