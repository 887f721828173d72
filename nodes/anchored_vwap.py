"""L3 anchored VWAPs from each timeframe's most significant recent swings, with a GP projection of each."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
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


@dataclass(frozen=True)
class _Anchored:
    """A timeframe's anchors that have a VWAP to report, with those VWAPs: what its projections are fitted to."""

    anchors: list[avwap.Anchor]
    paths: list[np.ndarray]


def _anchored(loaded: IndicatorFrame) -> _Anchored:
    candles = avwap.Candles.of(loaded.frame)  # the columns once, for every anchor and VWAP below
    anchors = avwap.choose_anchors_in(candles)
    paths = candles.vwaps([anchor.position for anchor in anchors])
    # No volume traded since the anchor (a NaN last value): there is no VWAP to report.
    reported = [(anchor, path) for anchor, path in zip(anchors, paths, strict=True) if not math.isnan(path[-1])]
    return _Anchored([anchor for anchor, _ in reported], [path for _, path in reported])


def _report(anchored: _Anchored, projections: Sequence[avwap.Projection]) -> TimeframeVwaps:
    vwaps = [
        AnchoredVwap(
            anchor_kind=anchor.kind,
            anchor_time=anchor.time.to_pydatetime(),
            anchor_price=anchor.price,
            value=float(path[-1]),
            projection=projection.points,
            kernel=projection.kernel,
        )
        for anchor, path, projection in zip(anchored.anchors, anchored.paths, projections, strict=True)
    ]
    return TimeframeVwaps(kernel=avwap.KERNEL_FORM, vwaps=vwaps)


def timeframe_vwaps(loaded: IndicatorFrame) -> TimeframeVwaps:
    anchored = _anchored(loaded)
    return _report(anchored, avwap.project_vwaps(anchored.paths))  # fitted together, each to its own numbers


def timeframes_vwaps(frames: Sequence[IndicatorFrame]) -> list[TimeframeVwaps]:
    """`timeframe_vwaps` of each frame, every timeframe's VWAPs projected in one batch.

    A batch gives each VWAP its lone fit's numbers (`tools.avwap_fit`); fitting a symbol's ~24 VWAPs
    at once pays the fit's fixed numpy overhead once instead of once per timeframe.
    """
    anchored = [_anchored(loaded) for loaded in frames]
    projections = avwap.project_vwaps([path for each in anchored for path in each.paths])
    reports, start = [], 0
    for each in anchored:
        reports.append(_report(each, projections[start : start + len(each.paths)]))
        start += len(each.paths)
    return reports


async def anchored_vwap(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    request, market = state["request"], state["market"]
    frames = services(runtime, request).frames
    loaded = {tf: await frames.get(request.symbol, tf, market.as_of) for tf in market.timeframes}

    def progress(done: int, tf: str) -> None:
        # The longest analyst: a progress report per timeframe reaches the run's event stream.
        runtime.stream_writer({"node": NODE, "stage": "projections", "timeframe": tf, "done": done, "total": len(loaded)})

    by_timeframe = {}
    # The BLAS thread limit once for every timeframe; no await inside it (see one_blas_thread).
    with avwap.one_blas_thread():
        try:
            batched = timeframes_vwaps([loaded[tf] for tf in market.timeframes])
        except Exception:  # noqa: BLE001  # raised again below, by the replay
            batched = None
        if batched is None:
            # Replayed timeframe by timeframe: the progress reports of the timeframes before the failing one
            # reach the stream, then that timeframe's own exception, as an unbatched loop gives them.
            for done, tf in enumerate(market.timeframes, start=1):
                by_timeframe[tf] = timeframe_vwaps(loaded[tf])
                progress(done, tf)
        else:
            for done, (tf, vwaps) in enumerate(zip(market.timeframes, batched, strict=True), start=1):
                by_timeframe[tf] = vwaps
                progress(done, tf)
    report = AnchoredVwapReport(as_of=market.as_of, produced_by=NODE, by_timeframe=by_timeframe)
    count = sum(len(v.vwaps) for v in by_timeframe.values())
    return {
        "levels": LevelsSection(anchored_vwap=report),
        "audit": [event(NODE, "ANALYSIS_UPDATE", f"{count} anchored VWAPs", market.as_of)],
    }
