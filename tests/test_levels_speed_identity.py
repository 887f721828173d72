"""The level and feature nodes' fast paths give bit for bit what the straightforward code they replace gives."""

from __future__ import annotations

import math
from datetime import UTC, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from nodes.confluence import MAX_ZONES, merge_zones
from nodes.fibonacci import PIVOT_WIDTH, impulse_levels, levels_between
from nodes.key_levels import daily_levels, with_forming_day
from nodes.regime import SLOPE_BARS, WIDTH_WINDOW, classify, label
from nodes.structure import describe as describe_structure
from nodes.structure import newest_labels
from state.analysis import ConfluenceZone, FibonacciLevels, KeyLevel
from tools.frames import IndicatorFrame
from tools.key_levels import LEVEL_NAMES, key_levels, level_history, relate
from tools.pivots import extremes, labels_of, pivot_rows
from tools.resample import resample


def bits(values: np.ndarray) -> bytes:
    return np.asarray(values, dtype=float).tobytes()




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
    return levels_between(highs, lows, float(closes[-1]), int(tops[-1]), int(bottoms[-1]))


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
    return label(width_rank, atr_pct, atr_history, adx, fast[-1], slow_all[-1], slope), adx, atr_pct, width_rank, slope


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
