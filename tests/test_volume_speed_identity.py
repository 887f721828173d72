"""The volume node's fast paths (profiles, waves, OBV) give bit for bit what the straightforward code they replace gives."""

from __future__ import annotations

from datetime import timezone

import numpy as np
import pandas as pd
import pytest

from nodes.volume import PROFILE_WINDOW, WAVES_SHOWN, _datetimes, describe
from state.analysis import TimeframeVolume, VolumeProfile, WeisWave
from tools.indicators import enrich
from tools.volume_profile import (
    OBV_WINDOW,
    WAVE_ATR_MULTIPLE,
    _wave_spans,
    bin_edges,
    obv_divergence,
    obv_slope,
    obv_values,
    profile,
    volume_by_bins,
    weis_waves,
)


def bits(values: np.ndarray) -> bytes:
    return np.asarray(values, dtype=float).tobytes()


# --- volume profile ---------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:invalid value encountered in multiply:RuntimeWarning")
def test_bin_edges_are_each_windows_linspace() -> None:
    rng = np.random.default_rng(0)
    bottoms = np.concatenate((rng.uniform(1, 100, 40), [5.0, 1e6, 7.0, np.nan, 3.0, 0.0]))
    tops = np.concatenate((bottoms[:40] + rng.uniform(0, 10, 40), [5.0, 1e6 + 1e-9, np.inf, 4.0, np.nan, 5e-324]))
    for bins in (1, 2, 7, 50):
        for rows in [slice(0, 40), slice(0, 2), slice(40, 46), slice(38, 42), slice(44, 46)]:
            b, t = bottoms[rows], tops[rows]
            alone = np.stack([np.linspace(x, y, bins + 1) for x, y in zip(b.tolist(), t.tolist(), strict=True)])
            assert bits(bin_edges(b, t, bins)) == bits(alone)


def straightforward_bins(low: np.ndarray, high: np.ndarray, volume: np.ndarray, bins: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """One window: linspace edges, each candle's overlap with each bin, summed candle after candle; then
    each flat candle's volume into the bin holding its price (all of them into the first when the window is flat)."""
    edges = np.linspace(float(low.min()), float(high.max()), bins + 1)
    hist = np.zeros(bins)
    flat = []
    for lo, hi, vol in zip(low.tolist(), high.tolist(), volume.tolist(), strict=True):
        if hi - lo <= 0:
            flat.append((lo, vol))
            continue
        overlap = np.maximum(np.minimum(hi, edges[1:]) - np.maximum(lo, edges[:-1]), 0.0)
        hist += overlap / (hi - lo) * vol
    if flat and edges[-1] > edges[0]:
        for lo, vol in flat:
            hist[min(max(int(np.searchsorted(edges, lo, side="right")) - 1, 0), bins - 1)] += vol
    elif flat:
        hist[0] += np.array([vol for _, vol in flat]).sum()
    return edges, hist


@pytest.mark.parametrize("seed", range(8))
def test_windows_binned_together_match_the_straightforward_binning(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 100
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 3 * n)))
    spread = close * rng.uniform(0.0, 0.02, 3 * n)
    low, high = close - spread, close + spread * rng.uniform(0.2, 2.0, 3 * n)
    volume = rng.uniform(0, 10, 3 * n)
    plain = [a.reshape(3, n).copy() for a in (low, high, volume)]  # no flat candle anywhere
    high[rng.integers(0, 3 * n, 4)] = low[rng.integers(0, 3 * n, 4)]  # some flat (or inverted) candles
    flats = [a.reshape(3, n) for a in (low, high, volume)]
    flats[0][2], flats[1][2] = 42.0, 42.0  # one window at a single price
    for windows in (plain, flats, [a[:1] for a in plain], [a[2:] for a in flats]):
        edges, hist = volume_by_bins(*windows)
        for row in range(len(windows[0])):
            alone_edges, alone_hist = straightforward_bins(windows[0][row], windows[1][row], windows[2][row])
            assert bits(edges[row]) == bits(alone_edges) and bits(hist[row]) == bits(alone_hist)


def test_profile_times_are_the_index_datetimes() -> None:
    index = pd.date_range("2026-01-01", periods=300, freq="5min", tz="UTC").as_unit("ns")
    rows = np.array([0, 299, 150, 7, 7])
    cases = [
        index,
        index + pd.Timedelta(microseconds=3),
        index + pd.Timedelta(nanoseconds=5),  # not whole microseconds: pandas' own conversion
        index.tz_convert("Europe/Berlin"),
        index.tz_localize(None),
        index.as_unit("us"),
        pd.DatetimeIndex(["1960-03-01 12:00"] * 300, tz="UTC").as_unit("ns"),
        index + pd.Timedelta(seconds=7),
        index.insert(7, pd.NaT)[:300],
        index.tz_convert(timezone.utc),
        index.tz_convert("UTC"),
    ]
    for times in cases:
        expected = times.array[rows].to_pydatetime().tolist()
        found = _datetimes(times, rows)
        assert found == expected and [t.tzinfo for t in found] == [t.tzinfo for t in expected]


def stepwise_wave_spans(close: list[float], threshold: list[float]) -> list[tuple[int, int, int]]:
    """Every candle in turn, with the wave's direction as a variable."""
    spans: list[tuple[int, int, int]] = []
    direction, turn, extreme = 0, 0, 0
    start = peak = close[0] if close else 0.0
    for i, (price, step) in enumerate(zip(close[1:], threshold[1 : len(close)], strict=True), start=1):
        if direction == 0:
            if abs(price - start) > step:
                direction, extreme, peak = (1 if price > start else -1), i, price
            continue
        if direction * (price - peak) >= 0:
            extreme, peak = i, price
        elif direction * (peak - price) > step:
            spans.append((direction, turn, extreme))
            direction, turn, extreme, peak = -direction, extreme, i, price
    if direction != 0:
        spans.append((direction, turn, len(close) - 1))
    return spans


@pytest.mark.parametrize("seed", range(8))
def test_wave_spans_match_the_candle_by_candle_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    close = np.round(100 + rng.normal(0, 1, 400).cumsum(), 1)  # rounded: equal closes (ties at the extreme)
    threshold = rng.uniform(0.2, 3.0, 400)
    threshold[:14] = np.nan  # ATR warm-up
    threshold[rng.integers(0, 400, 5)] = np.nan
    close[rng.integers(20, 400, 3)] = np.nan
    for n in (0, 1, 2, 3, 15, 16, 60, 400):
        prices, steps = close[:n].tolist(), threshold[:n].tolist()
        assert _wave_spans(prices, steps) == stepwise_wave_spans(prices, steps)
    for short in (0, 1, 2, 100):
        with pytest.raises(ValueError, match="shorter"):
            stepwise_wave_spans(close[:200].tolist(), threshold[:short].tolist())
        with pytest.raises(ValueError, match="shorter"):
            _wave_spans(close[:200].tolist(), threshold[:short].tolist())
    assert _wave_spans([5.0], []) == stepwise_wave_spans([5.0], []) == []


def test_wave_spans_match_the_candle_by_candle_loop_on_odd_values() -> None:
    """Infinite closes (inf - inf is NaN, not a new extreme), infinite and negative thresholds, signed zeros."""
    rng = np.random.default_rng(11)
    odd = [np.inf, -np.inf, np.nan, 0.0, -0.0]
    for _ in range(300):
        n = int(rng.integers(2, 80))
        close = np.round(rng.normal(0, 1, n).cumsum(), 0)
        threshold = rng.choice([0.0, 0.5, 1.0, 2.0, -1.0, np.inf, np.nan], n)
        spots = rng.integers(0, n, int(rng.integers(0, 6)))
        close[spots] = rng.choice(odd, len(spots))
        prices, steps = close.tolist(), threshold.tolist()
        assert _wave_spans(prices, steps) == stepwise_wave_spans(prices, steps)


def reference_volume(frame: pd.DataFrame) -> TimeframeVolume:
    """`describe` the straightforward way: finite rows kept, each window profiled from its frame slice,
    each model built on its own, times looked up in the index one by one."""
    keep = np.isfinite(frame[["high", "low", "close", "volume"]].to_numpy()).all(axis=1)
    kept = frame[keep]
    n, size = len(kept), min(len(kept), PROFILE_WINDOW)

    def window(rows: pd.DataFrame) -> VolumeProfile:
        found = profile(rows)
        return VolumeProfile(
            start=rows.index[0].to_pydatetime(), end=rows.index[-1].to_pydatetime(), candles=len(rows),
            point_of_control=found.point_of_control, value_area_high=found.value_area_high,
            value_area_low=found.value_area_low,
        )  # fmt: skip

    recent = window(kept.iloc[n - size :])
    previous = window(kept.iloc[n - 2 * size : n - size]) if n >= 2 * PROFILE_WINDOW else None
    shift = None
    if previous is not None and previous.point_of_control > 0:
        shift = (recent.point_of_control / previous.point_of_control - 1) * 100
    close, volume = kept["close"], kept["volume"]
    waves = weis_waves(close.to_numpy(), volume.to_numpy(), WAVE_ATR_MULTIPLE * kept["atr"].to_numpy(), newest=WAVES_SHOWN)
    return TimeframeVolume(
        obv_slope=obv_slope(close, volume, OBV_WINDOW),
        obv_divergence=obv_divergence(close, volume, OBV_WINDOW),
        profile=recent,
        previous_profile=previous,
        poc_shift_pct=shift,
        waves=[
            WeisWave(
                direction=w.direction, start=kept.index[w.first].to_pydatetime(), end=kept.index[w.last].to_pydatetime(),
                volume=w.volume, price_change=w.price_change,
            )  # fmt: skip
            for w in waves
        ],
    )


@pytest.mark.parametrize("seed", range(6))
def test_volume_description_matches_the_model_by_model_build(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for n in (1, 2, 30, 99, 100, 150, 199, 200, 260, 300):
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
        if seed == 5:
            close = np.round(close, 0)  # flat stretches: flat candles and one-price windows
        open_ = np.concatenate(([close[0]], close[:-1]))
        high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, n) * (seed != 5))
        low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, n) * (seed != 5))
        index = pd.date_range("2026-01-01", periods=n, freq="h", tz="UTC")
        frame = enrich(
            pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": rng.uniform(0, 9, n)}, index=index)
        )
        if seed % 2 and n > 20:
            frame.iloc[rng.integers(0, n, 3), frame.columns.get_loc("close")] = np.nan  # skipped, not binned
        got, expected = describe(frame), reference_volume(frame)
        assert got == expected and repr(got) == repr(expected)


def numpy_divergence(close: np.ndarray, flows: np.ndarray, window: int) -> str | None:
    if len(close) < window or window < 4:
        return None
    prices, flows, half = close[-window:], flows[-window:], window // 2
    if np.isnan(flows).any():
        return None
    bullish = prices[half:].min() < prices[:half].min() and flows[half:].min() > flows[:half].min()
    bearish = prices[half:].max() > prices[:half].max() and flows[half:].max() < flows[:half].max()
    return None if bullish == bearish else ("BULLISH" if bullish else "BEARISH")


@pytest.mark.parametrize("seed", range(8))
def test_obv_divergence_matches_numpys_min_and_max(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(60):
        n = int(rng.integers(0, 40))
        close = np.round(100 + rng.normal(0, 1, n).cumsum(), 0)  # ties
        volume = rng.choice([0.0, 1.0, 2.0, 3.0], n)
        if rng.random() < 0.2 and n:
            close[rng.integers(0, n)] = np.nan
        flows = obv_values(close, volume)
        for window in (3, 4, 5, 20):
            assert obv_divergence(close, volume, window, flows) == numpy_divergence(close, flows, window)
            assert obv_divergence(close, volume, window) == numpy_divergence(close, flows, window)


# --- pivots -----------------------------------------------------------------------
