"""L2 volume: OBV slope and divergence, the recent and previous volume profiles, Weis waves.

Per timeframe, on the run's indicator frame (closed candles up to the run's clock):
- OBV over the whole frame; slope and divergence over the last OBV_WINDOW candles;
- the profile of the last PROFILE_WINDOW candles and of the PROFILE_WINDOW before them (None when
  the frame does not hold that many more), and the POC shift between the two in percent;
- Weis waves over the whole frame, reversal threshold WAVE_ATR_MULTIPLE x ATR(14) at each candle;
  the last WAVES_SHOWN are reported, the newest one provisional.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from langgraph.runtime import Runtime

from nodes.common import event, services
from state import AnalysisState
from state.analysis import FeaturesSection, TimeframeVolume, VolumeProfile, VolumeReport, WeisWave
from tools.context import Services
from tools.volume_profile import (
    OBV_WINDOW,
    WAVE_ATR_MULTIPLE,
    obv_divergence,
    obv_slope,
    profile,
    weis_waves,
)

NODE = "volume"
PROFILE_WINDOW = 100
WAVES_SHOWN = 6


def window_profile(window: pd.DataFrame) -> VolumeProfile:
    found = profile(window)
    return VolumeProfile(
        start=window.index[0].to_pydatetime(),
        end=window.index[-1].to_pydatetime(),
        candles=len(window),
        point_of_control=found.point_of_control,
        value_area_high=found.value_area_high,
        value_area_low=found.value_area_low,
    )


def describe(frame: pd.DataFrame) -> TimeframeVolume:
    """The volume picture of one timeframe's frame (OHLCV plus the shared `atr` column)."""
    # The quality gate has already refused NaN candles; a stray one is skipped rather than poisoning a bin.
    finite = np.isfinite(frame[["high", "low", "close", "volume"]].to_numpy(float)).all(axis=1)
    candles = frame if finite.all() else frame[finite]
    recent = window_profile(candles.iloc[-PROFILE_WINDOW:])
    previous = None
    if len(candles) >= 2 * PROFILE_WINDOW:  # a shorter previous window would not compare like with like
        previous = window_profile(candles.iloc[-2 * PROFILE_WINDOW : -PROFILE_WINDOW])
    shift = None
    if previous is not None and previous.point_of_control > 0:
        shift = (recent.point_of_control / previous.point_of_control - 1) * 100
    close, volume = candles["close"], candles["volume"]
    threshold = WAVE_ATR_MULTIPLE * candles["atr"].to_numpy(float)
    times = candles.index
    waves = [
        WeisWave(
            direction=w.direction,
            start=times[w.first].to_pydatetime(),
            end=times[w.last].to_pydatetime(),
            volume=w.volume,
            price_change=w.price_change,
        )
        for w in weis_waves(close.to_numpy(float), volume.to_numpy(float), threshold)[-WAVES_SHOWN:]
    ]
    return TimeframeVolume(
        obv_slope=obv_slope(close, volume, OBV_WINDOW),
        obv_divergence=obv_divergence(close, volume, OBV_WINDOW),
        profile=recent,
        previous_profile=previous,
        poc_shift_pct=shift,
        waves=waves,
    )


async def volume(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    request, market = state["request"], state["market"]
    frames = services(runtime, request).frames
    by_timeframe = {
        tf: describe((await frames.get(request.symbol, tf, market.as_of)).frame) for tf in market.timeframes
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
