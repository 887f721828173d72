"""The level and feature nodes' fast paths give bit for bit what the straightforward code they replace gives."""

from __future__ import annotations

import math
from datetime import UTC, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from nodes.confluence import MAX_ZONES, merge_zones
from nodes.fibonacci import (
    GOLDEN_POCKET,
    PIVOT_WIDTH,
    RATIOS,
    impulse_levels,
    retracement,
)
from nodes.key_levels import daily_levels, with_forming_day
from nodes.regime import SLOPE_BARS, TREND_ADX, WIDTH_WINDOW, classify
from nodes.structure import describe as describe_structure
from nodes.structure import newest_labels
from nodes.volume import PROFILE_WINDOW, WAVES_SHOWN, _datetimes, describe
from state.analysis import ConfluenceZone, FibonacciLevels, KeyLevel, TimeframeVolume, VolumeProfile, WeisWave
from tools.frames import IndicatorFrame
from tools.indicators import enrich
from tools.key_levels import LEVEL_NAMES, key_levels, level_history, relate
from tools.pivots import extremes, labels_of, pivot_rows
from tools.resample import resample
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


def pairwise_extremes(values: np.ndarray, width: int, beats: np.ufunc) -> np.ndarray:
    n = len(values)
    return np.array(
        [i for i in range(width, n - width) if all(beats(values[i], values[j]) for j in range(i - width, i + width + 1) if j != i)],
        dtype=int,
    )


@pytest.mark.parametrize("seed", range(6))
def test_extremes_match_the_pairwise_comparisons(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = np.round(rng.normal(100, 3, 120), 0)  # rounded: many ties
    values[rng.integers(0, 120, 6)] = np.nan
    values[[10, 11]] = [np.inf, -np.inf]
    for width in (0, 1, 2, 3, 4):
        for beats in (np.greater, np.less, np.greater_equal):
            for part in (values, values[:2 * width + 1], values[: 2 * width], values[:0]):
                found = extremes(part, width, beats)
                assert found.tolist() == pairwise_extremes(part, width, beats).tolist()


@pytest.mark.parametrize("seed", range(6))
def test_pivot_rows_match_the_sorted_pairwise_pivots(seed: int) -> None:
    rng = np.random.default_rng(seed)
    close = np.round(100 + rng.normal(0, 1, 150).cumsum(), 0)
    highs, lows = close + np.round(rng.uniform(0, 2, 150), 0), close - np.round(rng.uniform(0, 2, 150), 0)
    highs[[30, 31]], lows[[30, 31]] = [200.0, 90.0], [10.0, 80.0]  # an outside candle: a swing high and low at once
    highs[rng.integers(0, 150, 3)] = np.nan
    for width in (0, 1, 2, 3):
        for since in (0, 1, 3, 40, 500, -5):
            for n in (150, 40, 2 * width + 1, 2 * width):
                h, lo = highs[:n], lows[:n]
                found = pivot_rows(h, lo, width, since)
                rows = [(int(p), True) for p in pairwise_extremes(h, width, np.greater)]
                rows += [(int(p), False) for p in pairwise_extremes(lo, width, np.less)]
                rows = sorted((p, not high) for p, high in rows if since <= 0 or p >= since)  # a high first on a tie
                assert found.positions.tolist() == [p for p, _ in rows]
                assert found.is_high.tolist() == [not low for _, low in rows]
                assert bits(found.prices) == bits([h[p] if not low else lo[p] for p, low in rows])
                assert found.positions.dtype == np.intp and found.is_high.dtype == bool


def reference_impulse(frame: pd.DataFrame) -> FibonacciLevels | None:
    highs, lows, closes = (frame[c].to_numpy(float) for c in ("high", "low", "close"))
    pivots = pivot_rows(highs, lows, width=PIVOT_WIDTH)
    tops, bottoms = pivots.positions[pivots.is_high], pivots.positions[~pivots.is_high]
    if not len(tops) or not len(bottoms):
        return None
    top, bottom = int(tops[-1]), int(bottoms[-1])
    high, low, up = float(highs[top]), float(lows[bottom]), top > bottom
    pocket = sorted(retracement(low, high, up, r) for r in GOLDEN_POCKET)
    return FibonacciLevels(
        swing_low=low,
        swing_high=high,
        direction="UP" if up else "DOWN",
        retracements={f"{r:.3f}": retracement(low, high, up, r) for r in RATIOS},
        golden_pocket=(pocket[0], pocket[1]),
        in_golden_pocket=pocket[0] <= float(closes[-1]) <= pocket[1],
    )


@pytest.mark.parametrize("seed", range(4))
def test_impulse_levels_match_the_ordered_pivots(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for n in (300, 40, 8, 7, 6, 1):
        close = np.round(100 + rng.normal(0, 1, n).cumsum(), 0)
        frame = pd.DataFrame({"high": close + 1, "low": close - 1, "close": close}, index=pd.RangeIndex(n))
        for variant in (frame, frame.assign(high=100.0, low=100.0)):
            assert impulse_levels(IndicatorFrame(timeframe="1h", frame=variant)) == reference_impulse(variant)


@pytest.mark.parametrize("seed", range(6))
def test_structure_labels_are_the_tail_of_the_whole_sequence(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for n in (300, 60, 25, 12, 7, 5, 0):
        close = np.round(100 + rng.normal(0, 1, n).cumsum(), 0)  # ties: EH / EL labels
        frame = pd.DataFrame({"high": close + np.round(rng.uniform(0, 2, n)), "low": close - np.round(rng.uniform(0, 2, n)), "close": close})
        if n > 20:
            frame.iloc[10, 0], frame.iloc[10, 1] = np.nan, np.nan
        pivots = pivot_rows(frame["high"].to_numpy(), frame["low"].to_numpy())
        labels = labels_of(pivots.is_high.tolist(), pivots.prices.tolist())
        highs, lows = pivots.prices[pivots.is_high], pivots.prices[~pivots.is_high]
        for count in (1, 2, 6, 40):
            assert newest_labels(pivots.is_high, highs, lows, count) == labels[-count:]
        if not n:
            continue
        found = describe_structure(IndicatorFrame(timeframe="1h", frame=frame))
        assert found.sequence == labels[-6:]
        high_label = next((x for x in reversed(labels) if x in ("HH", "LH", "EH")), None)
        low_label = next((x for x in reversed(labels) if x in ("HL", "LL", "EL")), None)
        bias = {("HH", "HL"): "BULLISH", ("LH", "LL"): "BEARISH"}.get((high_label, low_label), "NEUTRAL")
        assert found.bias == bias


# --- key levels -------------------------------------------------------------------


def reference_levels(daily: pd.DataFrame, last_price: float | None) -> list[KeyLevel]:
    """The last row of the full level history, as the levels were read before."""
    if daily.empty:
        return []
    row = level_history(daily).iloc[-1]
    price = float(daily["close"].iloc[-1]) if last_price is None else float(last_price)
    if not np.isfinite(price) or price <= 0:
        return []
    found = []
    for name in LEVEL_NAMES:
        value = float(row[name])
        if np.isfinite(value) and value > 0:
            position, distance = relate(price, value)
            found.append(KeyLevel(name=name, price=value, position=position, distance_pct=distance))
    return found


def random_days(rng: np.random.Generator, count: int, start: str, holes: bool = True) -> pd.DataFrame:
    days = pd.date_range(start, periods=count, freq="D", tz="UTC").as_unit("ns")
    keep = rng.random(count) > (0.04 if holes else 0.0)  # a few missing days
    keep[-1] = True
    days = days[keep]
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, len(days))))
    high, low = close * (1 + rng.uniform(0, 0.03, len(days))), close * (1 - rng.uniform(0, 0.03, len(days)))
    frame = pd.DataFrame({"open": close, "high": high, "low": low, "close": close, "volume": 1.0}, index=days)
    if holes:  # and a few NaN prices
        for column in ("open", "high", "low"):
            frame.loc[frame.index[rng.integers(0, len(days), 2)], column] = np.nan
    return frame


def hours_after(daily: pd.DataFrame, rng: np.random.Generator, hours: int, offset_days: int) -> pd.DataFrame:
    start = daily.index[-1] + pd.Timedelta(days=offset_days)
    index = pd.date_range(start, periods=hours, freq="h").as_unit("ns")
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, hours)))
    columns = {"open": close, "high": close * 1.01, "low": close * 0.99, "close": close, "volume": rng.uniform(1, 5, hours)}
    frame = pd.DataFrame(columns, index=index)
    if hours > 3:
        frame.iloc[1, 1] = np.nan  # a NaN high: skipped by fmax, as by the frame's max
    return frame


@pytest.mark.parametrize("seed", range(10))
def test_levels_of_the_newest_day_are_the_level_historys_last_row(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for count in (1, 2, 8, 40, 75, 300):
        for start, holes in (("2026-01-26", True), ("2026-02-27", False), ("2024-02-28", True), ("2025-12-29", False)):
            daily = random_days(rng, count, start, holes)
            for last_price in (None, float(daily["close"].iloc[-1]) * 1.0004, float("nan"), -1.0):
                assert key_levels(daily, last_price) == reference_levels(daily, last_price)


@pytest.mark.parametrize("seed", range(6))
def test_daily_levels_match_the_merged_frames_levels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for count, holes in ((1, True), (5, False), (60, True), (300, False), (300, True)):
        daily = random_days(rng, count, "2026-03-29", holes)
        for hours, offset in ((0, 1), (5, 1), (14, 1), (30, 1), (5, 0), (5, -3), (3, 2)):
            smallest = hours_after(daily, rng, hours, offset)
            for last_price in (None, 101.5):
                for day_frame in (daily, daily.iloc[:0]):
                    expected = reference_levels(with_forming_day(day_frame, smallest), last_price)
                    assert daily_levels(day_frame, "1d", smallest, last_price) == expected


def test_daily_levels_from_hours_match_the_resampled_frames_levels() -> None:
    rng = np.random.default_rng(11)
    hours = hours_after(random_days(rng, 3, "2026-10-01"), rng, 24 * 45 + 7, 0)
    hours = hours.drop(hours.index[[30, 500]])  # two incomplete days
    for cut in (len(hours), len(hours) - 7, 30):
        source = hours.iloc[:cut]
        daily = resample(source, "1h", "1d")
        for smallest in (source.iloc[-20:], source.iloc[:0]):
            expected = reference_levels(with_forming_day(daily, smallest), None)
            assert daily_levels(source, "1h", smallest, None) == expected


def test_daily_levels_fail_alike_on_bad_days() -> None:
    rng = np.random.default_rng(3)
    daily = random_days(rng, 20, "2026-03-01")
    smallest = hours_after(daily, rng, 5, 1)
    shifted = daily.set_axis(daily.index + pd.Timedelta(hours=1))
    unsorted = daily.iloc[::-1]
    berlin = smallest.tz_convert("Europe/Berlin")
    for day_frame, small in ((shifted, smallest), (unsorted, smallest), (daily, berlin), (daily, smallest.tz_convert(timezone(timedelta(hours=5))))):
        try:
            expected: object = reference_levels(with_forming_day(day_frame, small), None)
        except ValueError as error:
            expected = str(error)
        try:
            found: object = daily_levels(day_frame, "1d", small, None)
        except ValueError as error:
            found = str(error)
        assert found == expected


# --- regime -----------------------------------------------------------------------


def reference_regime(frame: pd.DataFrame) -> tuple:
    close, atr, width = (frame[c].to_numpy(float) for c in ("close", "atr", "bb_width"))
    fast, slow_all, adx_all = (frame[c].to_numpy(float) for c in ("ema_fast", "ema_slow", "adx"))
    atr_pct = float(atr[-1] / close[-1] * 100)
    widths = width[~np.isnan(width)][-WIDTH_WINDOW:]
    width_rank = float((widths <= widths[-1]).mean()) if len(widths) else 0.5
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = atr / close * 100
    atr_history = ratio[~np.isnan(ratio)][-WIDTH_WINDOW:]
    slow = slow_all[~np.isnan(slow_all)]
    slope = float((slow[-1] / slow[-SLOPE_BARS - 1] - 1) * 100) if len(slow) > SLOPE_BARS else 0.0
    adx = float(adx_all[-1])
    if width_rank >= 0.9 and len(atr_history) and atr_pct > 2 * float(np.median(atr_history)):
        regime = "VOLATILE"
    elif adx >= TREND_ADX and fast[-1] > slow_all[-1] and slope > 0:
        regime = "TRENDING_UP"
    elif adx >= TREND_ADX and fast[-1] < slow_all[-1] and slope < 0:
        regime = "TRENDING_DOWN"
    else:
        regime = "RANGING"
    return regime, adx, atr_pct, width_rank, slope


@pytest.mark.parametrize("seed", range(6))
def test_regime_matches_the_whole_column_computation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for n in (300, 120, 101, 100, 60, 12, 11, 3):
        frame = pd.DataFrame(
            {
                "close": 100 + rng.normal(0, 1, n).cumsum(),
                "atr": rng.uniform(0.5, 2.0, n),
                "bb_width": np.round(rng.uniform(1, 5, n), 1),
                "ema_fast": 100 + rng.normal(0, 1, n),
                "ema_slow": 100 + rng.normal(0, 1, n),
                "adx": rng.uniform(5, 40, n),
            },
            index=pd.date_range("2026-01-01", periods=n, freq="h", tz=UTC),
        )
        frame.iloc[: min(n - 1, 20), 1:] = np.nan  # warm-up
        variants = [frame]
        if n > 30:
            holed = frame.copy()
            holed.iloc[[-3, -40 % n, -90 % n], [1, 2, 4]] = np.nan  # NaN inside the windows
            zero = frame.copy()
            zero.iloc[-5, 0] = 0.0  # a zero close: an infinite ratio
            spike = frame.copy()
            spike.iloc[-1, 1], spike.iloc[-1, 2] = 50.0, 99.0  # volatile
            variants += [holed, zero, spike]
        for variant in variants:
            found = classify(IndicatorFrame(timeframe="1h", frame=variant))
            regime, adx, atr_pct, width_rank, slope = reference_regime(variant)
            assert found.regime == regime
            for a, b in ((found.adx, adx), (found.atr_pct, atr_pct), (found.bb_width_pct_rank, width_rank), (found.ema_slope_pct, slope)):
                assert a == b or (math.isnan(a) and math.isnan(b))


# --- confluence -------------------------------------------------------------------


def reference_zones(found: list[tuple[float, float, str]], tolerance: float) -> list[ConfluenceZone]:
    zones: list[ConfluenceZone] = []
    current: list[tuple[float, float, str]] = []
    for item in sorted(found) + [(float("inf"), 0.0, "")]:
        if current and item[0] - current[-1][0] > tolerance:
            prices = [p for p, _, _ in current]
            score = round(sum(w for _, w, _ in current), 3)
            zones.append(ConfluenceZone(low=min(prices), high=max(prices), score=score, contributors=sorted({c for _, _, c in current})))
            current = []
        current.append(item)
    return sorted(zones, key=lambda z: z.score, reverse=True)[:MAX_ZONES]


@pytest.mark.parametrize("seed", range(6))
def test_merged_zones_match_every_zone_built_then_ranked(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for count in (0, 1, 5, 40, 120):
        prices = np.round(rng.uniform(90, 110, count), 1).tolist()
        weights = rng.choice([1.0, 1.5, 0.5], count).tolist()  # many equal scores: the order of ties matters
        found = [(p, w, f"c{i % 7}") for i, (p, w) in enumerate(zip(prices, weights, strict=True))]
        for tolerance in (0.0, 0.25, 1.0, 50.0):
            assert merge_zones(found, tolerance) == reference_zones(found, tolerance)
