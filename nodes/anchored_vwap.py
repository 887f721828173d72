"""L3 anchored VWAPs from each timeframe's most significant recent swings, with a GP projection of each."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from langgraph.runtime import Runtime

from nodes.common import event, services
from state import AnalysisState
from state.analysis import (
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
    """A timeframe's anchors that have a VWAP to report, with those VWAPs and the values each one's
    projection is fitted to (`avwap.prepare_projections`): what its reports are finished from."""

    anchors: list[avwap.Anchor]
    paths: list[np.ndarray]
    prepared: list[avwap.Prepared]


def _anchored(anchors: list[avwap.Anchor], paths: np.ndarray) -> _Anchored:
    # No volume traded since the anchor (a NaN last value): there is no VWAP to report.
    reported = [(anchor, path) for anchor, path in zip(anchors, paths, strict=True) if not math.isnan(path[-1])]
    kept = [path for _, path in reported]
    return _Anchored([anchor for anchor, _ in reported], kept, avwap.prepare_projections(kept))


def _report(anchored: _Anchored, projections: Sequence[avwap.Projection]) -> TimeframeVwaps:
    # One validation of the timeframe's VWAPs as fields: the models AnchoredVwap(**fields) builds one by one.
    vwaps = [
        {
            "anchor_kind": anchor.kind,
            "anchor_time": anchor.time.to_pydatetime(),
            "anchor_price": anchor.price,
            "value": float(path[-1]),
            "projection": projection.points,
            "kernel": projection.kernel,
        }
        for anchor, path, projection in zip(anchored.anchors, anchored.paths, projections, strict=True)
    ]
    return TimeframeVwaps.model_validate({"kernel": avwap.KERNEL_FORM, "vwaps": vwaps})


def _anchored_alone(loaded: IndicatorFrame) -> _Anchored:
    candles = avwap.Candles.of(loaded.frame)  # the columns once, for every anchor and VWAP
    anchors = avwap.choose_anchors_in(candles)
    return _anchored(anchors, candles.vwaps([anchor.position for anchor in anchors]))


def timeframe_vwaps(loaded: IndicatorFrame) -> TimeframeVwaps:
    anchored = _anchored_alone(loaded)
    return _report(anchored, avwap.finish_projections(anchored.prepared))


def _each_alone(anchored: Sequence[_Anchored]) -> None:
    """Finish the timeframes' projections one timeframe at a time: raises the error the first failing one
    raises alone, which is what a loop of `timeframe_vwaps` raises."""
    for each in anchored:
        avwap.finish_projections(each.prepared)


def timeframes_vwaps(frames: Sequence[IndicatorFrame], anchored_one: Callable[[int], None] | None = None) -> list[TimeframeVwaps]:
    """`timeframe_vwaps` of each frame, with the same results and the same error, every timeframe's
    projections finished in one batch.

    A batch gives each VWAP its lone fit's numbers (`tools.avwap_fit`); finishing a symbol's ~24 fits
    at once pays the fit's fixed numpy overhead once instead of once per timeframe (fits of one length
    share their elementwise steps and sums); so do choosing all the timeframes' anchors and running
    their VWAPs at once (`avwap.choose_anchors_each`, `vwaps_each`). Each VWAP's window of values is
    taken timeframe by timeframe, and `anchored_one(i)` is told when frame i's are: the node's progress.
    """
    try:
        candles = [avwap.Candles.of(loaded.frame) for loaded in frames]
        anchors: list[list[avwap.Anchor]] | None = avwap.choose_anchors_each(candles)
        paths = avwap.vwaps_each(candles, [[anchor.position for anchor in each] for each in anchors])
    except Exception:  # noqa: BLE001  # raised again below, by the timeframe that raises it alone
        anchors = None
    anchored: list[_Anchored] = []
    for i, loaded in enumerate(frames):
        try:
            anchored.append(_anchored_alone(loaded) if anchors is None else _anchored(anchors[i], paths[i]))
        except Exception:
            _each_alone(anchored)  # a loop of timeframe_vwaps would have met an earlier timeframe's error first
            raise
        if anchored_one is not None:
            anchored_one(i)
    try:
        projections = avwap.finish_projections([prepared for each in anchored for prepared in each.prepared])
    except Exception:
        _each_alone(anchored)  # the first failing timeframe's own error
        raise
    reports, start = [], 0
    for each in anchored:
        reports.append(_report(each, projections[start : start + len(each.prepared)]))
        start += len(each.prepared)
    return reports


async def anchored_vwap(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    request, market = state["request"], state["market"]
    frames = services(runtime, request).frames
    loaded = {tf: await frames.get(request.symbol, tf, market.as_of) for tf in market.timeframes}
    # A frame a previous run already projected (a scan's next cycle: every timeframe but the newest
    # candles') keeps its VWAPs; the rest are projected together, each exactly as it would be alone.
    missing = [tf for tf in market.timeframes if loaded[tf].derived(NODE) is None]
    done = len(loaded) - len(missing)

    def progress(tf: str) -> None:
        # The longest analyst: a progress report per timeframe reaches the run's event stream as soon as
        # the timeframe's VWAPs and their fitting windows are ready (anchors and VWAPs come first, every
        # timeframe's at once; the batched projections follow the last report). A failing timeframe
        # stops them at the one before it. Timeframes projected before report first.
        nonlocal done
        done += 1
        runtime.stream_writer({"node": NODE, "stage": "vwaps", "timeframe": tf, "done": done, "total": len(loaded)})

    for position, tf in enumerate(tf for tf in market.timeframes if tf not in missing):
        runtime.stream_writer({"node": NODE, "stage": "vwaps", "timeframe": tf, "done": position + 1, "total": len(loaded)})
    # The BLAS thread limit once for every timeframe; no await inside it (see one_blas_thread).
    with avwap.one_blas_thread():
        reports = timeframes_vwaps([loaded[tf] for tf in missing], lambda i: progress(missing[i])) if missing else []
    for tf, fresh in zip(missing, reports, strict=True):
        loaded[tf].keep(NODE, fresh)
    by_timeframe = {tf: loaded[tf].derived(NODE) for tf in market.timeframes}
    report = AnchoredVwapReport(as_of=market.as_of, produced_by=NODE, by_timeframe=by_timeframe)
    count = sum(len(v.vwaps) for v in by_timeframe.values())
    return {
        "levels": LevelsSection(anchored_vwap=report),
        "audit": [event(NODE, "ANALYSIS_UPDATE", f"{count} anchored VWAPs", market.as_of)],
    }
