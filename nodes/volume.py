"""L2 volume: OBV slope and divergence, the recent and previous volume profiles, Weis waves.

Per timeframe, on the run's indicator frame (closed candles up to the run's clock):
- OBV over the whole frame; slope and divergence over the last OBV_WINDOW candles;
- the profile of the last PROFILE_WINDOW candles and of the PROFILE_WINDOW before them (None when
  the frame does not hold that many more), and the POC shift between the two in percent;
- Weis waves over the whole frame, reversal threshold WAVE_ATR_MULTIPLE x ATR(14) at each candle;
  the last WAVES_SHOWN are reported, the newest one provisional.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from langgraph.runtime import Runtime

from nodes.common import event, services
from state import AnalysisState
from state.analysis import FeaturesSection, TimeframeVolume, VolumeReport
from tools.context import Services
from tools.frames import IndicatorFrame
from tools.indicators import column_arrays
from tools.volume_profile import (
    OBV_WINDOW,
    WAVE_ATR_MULTIPLE,
    obv_divergence,
    obv_slope,
    obv_values,
    value_area,
    volume_by_bins,
    weis_waves,
)

NODE = "volume"
PROFILE_WINDOW = 100
WAVES_SHOWN = 6
_SECOND_NS = 1_000_000_000


def _datetimes(times: pd.DatetimeIndex, rows: np.ndarray) -> list[datetime]:
    """`times.array[rows].to_pydatetime().tolist()`: on a UTC nanosecond index of whole seconds, the same
    datetimes made from the integers, at half the cost of pandas boxing an array of them first."""
    if isinstance(times, pd.DatetimeIndex) and times.tz is UTC and times.unit == "ns":
        nanoseconds = times.asi8[rows]
        if not (nanoseconds % _SECOND_NS).any():  # NaT's integer is no whole second either
            return [datetime.fromtimestamp(second, UTC) for second in (nanoseconds // _SECOND_NS).tolist()]
    return times.array[rows].to_pydatetime().tolist()


def window_profiles(
    low: np.ndarray, high: np.ndarray, volume: np.ndarray, count: int, stamps: Iterator[datetime]
) -> list[dict[str, Any]]:
    """Fields of the `VolumeProfile`s of the newest `count` blocks of PROFILE_WINDOW candles (all candles
    when fewer), newest first: `describe` validates them with the rest of its answer, in one call.

    The blocks are the rows of one reshape, binned in one pass; `stamps` yields each one's start and end.
    """
    size = min(len(low), PROFILE_WINDOW)
    edges, hist = volume_by_bins(*(a[len(a) - count * size :].reshape(count, size)[::-1] for a in (low, high, volume)))
    profiles = []
    for window_edges, window_hist in zip(edges, hist, strict=True):
        found = value_area(window_edges, window_hist)
        profiles.append(
            {
                "start": next(stamps),
                "end": next(stamps),
                "candles": size,
                "point_of_control": found.point_of_control,
                "value_area_high": found.value_area_high,
                "value_area_low": found.value_area_low,
            }
        )
    return profiles


def describe(frame: pd.DataFrame) -> TimeframeVolume:
    """The volume picture of one timeframe's frame (OHLCV plus the shared `atr` column)."""
    # Columns once as arrays: per-window DataFrame slices and column lists cost more than the maths.
    high, low, close, volume, atr = column_arrays(frame, "high", "low", "close", "volume", "atr")
    times = frame.index
    # The quality gate has already refused NaN candles; a stray one is skipped rather than poisoning a bin.
    finite = np.isfinite(high) & np.isfinite(low) & np.isfinite(close) & np.isfinite(volume)
    if not finite.all():
        high, low, close, volume, atr, times = (a[finite] for a in (high, low, close, volume, atr, times))
    n = len(times)
    size = min(n, PROFILE_WINDOW)
    windows = 2 if n >= 2 * PROFILE_WINDOW else 1  # a shorter previous window would not compare like with like
    waves = weis_waves(close, volume, WAVE_ATR_MULTIPLE * atr, newest=WAVES_SHOWN)
    # Every time reported, boxed in one call rather than one index lookup per time (from the index's
    # array: the same datetimes, without building an index around them first).
    edges = [(n - (k + 1) * size, n - k * size - 1) for k in range(windows)] + [(w.first, w.last) for w in waves]
    stamps = iter(_datetimes(times, np.asarray(edges, dtype=int).reshape(-1)))
    profiles = window_profiles(low, high, volume, windows, stamps)
    recent, previous = profiles[0], (profiles[1] if len(profiles) > 1 else None)
    shift = None
    if previous is not None and previous["point_of_control"] > 0:
        shift = (recent["point_of_control"] / previous["point_of_control"] - 1) * 100
    flows = obv_values(close, volume)  # once, for the slope and the divergence
    # One validation of the whole answer, nested models included: a third cheaper than building each one.
    return TimeframeVolume.model_validate(
        {
            "obv_slope": obv_slope(close, volume, OBV_WINDOW, flows),
            "obv_divergence": obv_divergence(close, volume, OBV_WINDOW, flows),
            "profile": recent,
            "previous_profile": previous,
            "poc_shift_pct": shift,
            "waves": [
                {
                    "direction": w.direction, "start": next(stamps), "end": next(stamps),
                    "volume": w.volume, "price_change": w.price_change,
                }
                for w in waves
            ],
        }
    )  # fmt: skip


def _describe_loaded(loaded: IndicatorFrame) -> TimeframeVolume:
    return describe(loaded.frame)


async def volume(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    request, market = state["request"], state["market"]
    frames = services(runtime, request).frames
    by_timeframe = {
        tf: (await frames.get(request.symbol, tf, market.as_of)).derive(NODE, _describe_loaded) for tf in market.timeframes
    }
    report = VolumeReport(as_of=market.as_of, produced_by=NODE, by_timeframe=by_timeframe)
    detail = {
        tf: {"obv_slope": round(v.obv_slope, 2), "divergence": v.obv_divergence, "poc_shift_pct": v.poc_shift_pct}
        for tf, v in by_timeframe.items()
    }
    return {
        "features": FeaturesSection(volume=report),
        "audit": [event(NODE, "ANALYSIS_UPDATE", "MAPPED", market.as_of, detail)],
    }
