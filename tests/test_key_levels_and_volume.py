"""Key levels and volume analysis on hand-built series whose answers are worked out here by hand."""

from __future__ import annotations

import types
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from nodes.key_levels import key_levels as key_levels_node
from nodes.volume import PROFILE_WINDOW, describe
from nodes.volume import volume as volume_node
from state import Settings
from state.analysis import KeyLevelsReport, VolumeReport
from state.sections import CandleSummary, MarketSection, RunRequest
from tools.context import build_services
from tools.indicators import enrich
from tools.key_levels import LEVEL_NAMES, key_levels, level_history
from tools.volume_profile import obv, obv_divergence, obv_slope, profile, volume_by_bin, weis_waves

AS_OF = datetime(2026, 11, 20, 13, 37, tzinfo=UTC)


def daily(rows: list[tuple[str, float, float, float, float]]) -> pd.DataFrame:
    """Daily candles from (date, open, high, low, close) rows; volume is irrelevant to key levels."""
    index = pd.DatetimeIndex([pd.Timestamp(d, tz="UTC") for d, *_ in rows], name="time")
    values = np.array([r[1:] for r in rows], dtype=float)
    return pd.DataFrame(
        {"open": values[:, 0], "high": values[:, 1], "low": values[:, 2], "close": values[:, 3], "volume": 1.0},
        index=index,
    )


def as_dict(levels: list) -> dict[str, tuple[float, str]]:
    return {lv.name: (lv.price, lv.position) for lv in levels}


# --- key levels -------------------------------------------------------------------
# 2026-05-31 is a Sunday, 2026-06-01 a Monday and the 1st of June: one step crosses both boundaries.
THREE_DAYS = [
    ("2026-05-31", 100.0, 104.0, 98.0, 102.0),
    ("2026-06-01", 102.0, 108.0, 101.0, 107.0),
    ("2026-06-02", 107.0, 109.0, 103.0, 105.0),
]


def test_three_days_across_a_week_and_month_boundary() -> None:
    frame = daily(THREE_DAYS)
    # Last candle Tue 06-02: its open is the day's; Mon 06-01 opens both the week and the month;
    # the previous day is 06-01. Week 05-25..31 and May hold one day each here: not reported.
    assert as_dict(key_levels(frame, last_price=105.0)) == {
        "daily_open": (107.0, "below"),
        "weekly_open": (102.0, "above"),
        "monthly_open": (102.0, "above"),
        "prev_day_high": (108.0, "below"),
        "prev_day_low": (101.0, "above"),
    }
    # Truncated at Monday: day, week and month all open at Monday's open; yesterday is Sunday.
    assert as_dict(key_levels(frame.iloc[:2])) == {
        "daily_open": (102.0, "above"),
        "weekly_open": (102.0, "above"),
        "monthly_open": (102.0, "above"),
        "prev_day_high": (104.0, "above"),
        "prev_day_low": (98.0, "above"),
    }
    # Only the Sunday: its week began on 05-25 and its month on 05-01, neither in the data.
    assert as_dict(key_levels(frame.iloc[:1])) == {"daily_open": (100.0, "above")}


def test_position_and_distance_use_the_005_percent_band() -> None:
    frame = daily(THREE_DAYS)
    levels = {lv.name: lv for lv in key_levels(frame, last_price=107.05)}
    assert levels["daily_open"].position == "at"  # +0.0467 %
    assert levels["daily_open"].distance_pct == pytest.approx(0.05 / 107 * 100)
    assert levels["prev_day_high"].position == "below"
    assert levels["prev_day_high"].distance_pct == pytest.approx((107.05 - 108) / 108 * 100)
    assert {lv.name: lv.position for lv in key_levels(frame, last_price=107.06)}["daily_open"] == "above"  # +0.056 %
    # Without a price, the last daily close is the reference.
    assert {lv.name: lv.distance_pct for lv in key_levels(frame)}["daily_open"] == pytest.approx((105 - 107) / 107 * 100)


def may_and_june() -> pd.DataFrame:
    """2026-04-28 .. 2026-06-02: a partial April, a complete May, a complete last week of May."""
    days = pd.date_range("2026-04-28", "2026-06-02", freq="D", tz="UTC")
    base = pd.DataFrame({"open": 105.0, "high": 110.0, "low": 100.0, "close": 105.0, "volume": 1.0}, index=days)
    base.loc[pd.Timestamp("2026-04-30", tz="UTC"), "high"] = 999.0  # partial April: must never surface
    base.loc[pd.Timestamp("2026-05-13", tz="UTC"), "high"] = 200.0  # May's high, outside the last week
    base.loc[pd.Timestamp("2026-05-20", tz="UTC"), "low"] = 50.0  # May's low
    base.loc[pd.Timestamp("2026-05-27", tz="UTC"), "high"] = 150.0  # high of the week 05-25..31
    base.loc[pd.Timestamp("2026-05-29", tz="UTC"), "low"] = 90.0  # low of that week
    base.loc[pd.Timestamp("2026-06-01", tz="UTC"), "open"] = 111.0
    base.loc[pd.Timestamp("2026-06-02", tz="UTC"), ["open", "high", "low"]] = [112.0, 115.0, 95.0]
    return base


def test_previous_week_and_month_only_when_complete() -> None:
    frame = may_and_june()
    got = {name: price for name, (price, _) in as_dict(key_levels(frame, last_price=120.0)).items()}
    assert got == {
        "daily_open": 112.0,
        "weekly_open": 111.0,
        "monthly_open": 111.0,
        "prev_day_high": 110.0,
        "prev_day_low": 100.0,
        "prev_week_high": 150.0,
        "prev_week_low": 90.0,
        "prev_month_high": 200.0,
        "prev_month_low": 50.0,
    }
    # Throughout May the previous month is the partial April: no prev_month level. April 30's 999 is a
    # complete day's high (prev_day_high on May 1st) but never a week's or a month's.
    history = level_history(frame)
    in_may = history.loc["2026-05-01":"2026-05-31"]
    assert in_may[["prev_month_high", "prev_month_low"]].isna().all().all()
    assert list(history.index[history["prev_day_high"] == 999.0]) == [pd.Timestamp("2026-05-01", tz="UTC")]
    assert not (history[["prev_week_high", "prev_month_high"]] == 999.0).any().any()
    # A hole on 05-27 makes that week and May incomplete; a NaN low on 05-29 does the same.
    holed = as_dict(key_levels(frame.drop(pd.Timestamp("2026-05-27", tz="UTC"))))
    assert not {"prev_week_high", "prev_week_low", "prev_month_high", "prev_month_low"} & holed.keys()
    spoiled = frame.copy()
    spoiled.loc[pd.Timestamp("2026-05-29", tz="UTC"), "low"] = np.nan
    assert not {"prev_week_low", "prev_month_low", "prev_week_high"} & as_dict(key_levels(spoiled)).keys()


def random_walk(n: int, freq: str, seed: int, start: str = "2026-01-01") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    open_ = np.concatenate(([100.0], close[:-1]))
    spread = np.abs(rng.normal(0, 0.01, n)) * close
    index = pd.date_range(start, periods=n, freq=freq, tz="UTC", name="time")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": rng.uniform(10, 1000, n),
        },
        index=index,
    )


def test_key_levels_never_look_ahead() -> None:
    frame = random_walk(130, "D", seed=7)
    full = level_history(frame)
    for t in range(len(frame)):
        cut = frame.iloc[: t + 1]
        pd.testing.assert_series_equal(level_history(cut).iloc[-1], full.iloc[t], check_names=False)
        reported = {lv.name: lv.price for lv in key_levels(cut)}
        expected = {name: value for name, value in full.iloc[t].items() if np.isfinite(value)}
        assert reported == expected
    assert set(full.iloc[-1].dropna().index) == set(LEVEL_NAMES)  # 130 days: every level known at the end


# --- volume profile ---------------------------------------------------------------
def window(rows: list[tuple[float, float, float]]) -> pd.DataFrame:
    low, high, vol = (np.array(c, dtype=float) for c in zip(*rows, strict=True))
    return pd.DataFrame({"low": low, "high": high, "volume": vol})


def test_profile_value_area_grows_toward_the_heavier_side() -> None:
    # Range 100..150 in 50 bins of 1.0. Background 1/bin; A adds 100 to bins 20, 21; C adds 30 to 21, 22, 23.
    # Bins: 20 -> 101, 21 -> 131 (POC), 22 -> 31, 23 -> 31. Total 340, 70 % = 238.
    # From 131: below (101) beats above (31) -> 232; then above (31) beats below (1) -> 263 >= 238.
    found = profile(window([(100, 150, 50), (120, 122, 200), (121, 124, 90)]))
    assert found.point_of_control == pytest.approx(121.5)
    assert (found.value_area_low, found.value_area_high) == (pytest.approx(120.0), pytest.approx(123.0))


def test_profile_with_all_volume_in_one_candle() -> None:
    # 1000 spread over 100..110 = bins 0..9 at 100 each, the other candles carry none; 70 % = 7 bins.
    found = profile(window([(100, 110, 1000), (100, 150, 0), (130, 140, 0)]))
    assert 100 <= found.value_area_low < found.point_of_control < found.value_area_high <= 110
    assert found.value_area_high - found.value_area_low == pytest.approx(7.0)
    # Ties go to the bin nearest the range's middle (125): bin 9, and the area grows down from it.
    assert (found.point_of_control, found.value_area_low) == (pytest.approx(109.5), pytest.approx(103.0))


def test_volume_is_conserved_across_bins_including_flat_candles() -> None:
    frame = random_walk(80, "h", seed=3)
    frame.iloc[5, frame.columns.get_loc("high")] = frame["low"].iloc[5]  # a flat candle
    frame.iloc[9, frame.columns.get_loc("low")] = frame["high"].max()  # flat at the window's top
    frame.iloc[9, frame.columns.get_loc("high")] = frame["high"].max()
    _, hist = volume_by_bin(frame["low"].to_numpy(), frame["high"].to_numpy(), frame["volume"].to_numpy())
    assert hist.sum() == pytest.approx(frame["volume"].sum())
    assert (hist >= 0).all()


# --- Weis waves -------------------------------------------------------------------
def test_weis_waves_on_a_known_sequence() -> None:
    close = np.array([10, 11, 12, 13, 12.8, 11, 10, 10.5, 9.6, 12, 14, 13.9])
    volume = np.arange(1.0, 13.0)
    waves = weis_waves(close, volume, np.full(len(close), 0.5))
    # Up 10 -> 13 (candles 1-3), confirmed by 11 (a 2.0 drop). Down 13 -> 9.6 (candles 4-8): the
    # 10.5 bounce is exactly 0.5, not more, so the wave goes on to 9.6. Up 9.6 -> 13.9 (provisional).
    assert [(w.direction, w.first, w.last, w.volume, w.price_change) for w in waves] == [
        ("UP", 1, 3, 2 + 3 + 4, pytest.approx(3.0)),
        ("DOWN", 4, 8, 5 + 6 + 7 + 8 + 9, pytest.approx(-3.4)),
        ("UP", 9, 11, 10 + 11 + 12, pytest.approx(4.3)),
    ]
    assert weis_waves(np.full(5, 10.0), np.ones(5), np.full(5, 0.5)) == []  # no move, no wave


def test_confirmed_waves_never_change_when_the_future_is_cut() -> None:
    frame = enrich(random_walk(300, "h", seed=11))
    threshold = 0.5 * frame["atr"].to_numpy()
    full = weis_waves(frame["close"].to_numpy(), frame["volume"].to_numpy(), threshold)
    for t in range(40, 300, 9):
        cut = weis_waves(frame["close"].to_numpy()[: t + 1], frame["volume"].to_numpy()[: t + 1], threshold[: t + 1])
        assert cut[:-1] == full[: len(cut) - 1]
        assert (cut[-1].direction, cut[-1].first) == (full[len(cut) - 1].direction, full[len(cut) - 1].first)
        assert cut[-1].last == t


# --- OBV --------------------------------------------------------------------------
def test_obv_matches_a_hand_computed_cumulative_signed_volume() -> None:
    close = pd.Series([10.0, 11, 11, 9, 12, 12.5, 12, 13])
    volume = pd.Series([5.0, 7, 3, 2, 4, 6, 8, 1])
    # Starts at +volume[0]; then +v on an up close, -v on a down close, 0 when unchanged.
    hand = [5, 5 + 7, 12, 12 - 2, 10 + 4, 14 + 6, 20 - 8, 12 + 1]
    assert obv(close, volume).tolist() == hand
    # Over the last 4 steps: +4 + 6 - 8 + 1 = 3, in units of their mean volume 19 / 4.
    assert obv_slope(close, volume, window=4) == pytest.approx(3 / (19 / 4))


DIVERGENT_CLOSE = [100, 98, 96, 94, 92, 90, 91, 92, 93, 94, 95, 96, 97, 98, 97, 95, 93, 91, 89, 90]
DIVERGENT_VOLUME = [10, 100, 100, 100, 100, 100, 10, 10, 10, 10, 100, 100, 100, 100, 5, 5, 5, 5, 5, 5]


def test_divergences_built_on_purpose() -> None:
    close, volume = pd.Series(DIVERGENT_CLOSE, dtype=float), pd.Series(DIVERGENT_VOLUME, dtype=float)
    # OBV: 10, then -100 x5 down to -490 (heavy selling), +10 x4 to -450, +100 x4 to -50, then -5 x5 to
    # -75 and +5. Older half: low close 90, low OBV -490. Newer half: close 89 (a lower low) while its
    # lowest OBV is -350 (a higher low): the new price low came on thin volume.
    flow = obv(close, volume)
    assert (flow.iloc[:10].min(), flow.iloc[10:].min(), flow.iloc[18]) == (-490, -350, -75)
    assert obv_divergence(close, volume, window=20) == "BULLISH"
    # The mirror image (prices reflected, same volumes) is a higher high on a lower OBV high.
    assert obv_divergence(200 - close, volume, window=20) == "BEARISH"
    # A steady decline on steady volume confirms itself: no divergence, slope -19 of a possible -20.
    falling = pd.Series(np.linspace(100, 80, 21))
    assert obv_divergence(falling, pd.Series(np.full(21, 50.0)), window=20) is None
    assert obv_slope(falling, pd.Series(np.full(21, 50.0)), window=20) == pytest.approx(-20.0)
    # Fewer candles than the window: nothing is claimed.
    assert obv_divergence(close.iloc[:15], volume.iloc[:15], window=20) is None


# --- per-timeframe volume picture: no look-ahead -----------------------------------
def test_volume_picture_at_t_is_the_same_with_or_without_the_future() -> None:
    raw = random_walk(420, "h", seed=5)
    enriched_full = enrich(raw)
    for t in (199, 250, 319):
        # Indicators computed on the full data then cut == indicators computed on the cut data.
        assert describe(enriched_full.iloc[: t + 1]) == describe(enrich(raw.iloc[: t + 1]))
    # The window that is "recent" at t is exactly the one "previous" 100 candles later.
    at_t = describe(enriched_full.iloc[:250])
    later = describe(enriched_full.iloc[: 250 + PROFILE_WINDOW])
    assert later.previous_profile == at_t.profile
    assert later.poc_shift_pct == pytest.approx(
        (later.profile.point_of_control / at_t.profile.point_of_control - 1) * 100
    )
    assert describe(enriched_full.iloc[:150]).previous_profile is None  # fewer than 200 candles


# --- the nodes on the built-in source ---------------------------------------------
async def run_nodes(settings: Settings, timeframes: list[str]) -> tuple[dict, KeyLevelsReport, VolumeReport]:
    """Both nodes on a state as the market-data node would leave it, with the real services."""
    request = RunRequest(symbol="BTC/USDT", source="builtin", scenario="uptrend", timeframes=timeframes,
                         decision_timeframe=timeframes[0], as_of=AS_OF)
    services = build_services(settings, request)
    frames = {tf: (await services.frames.get(request.symbol, tf, AS_OF)).frame for tf in request.timeframes}
    summaries = {tf: CandleSummary(count=len(f), first=f.index[0], last=f.index[-1], last_close=f["close"].iloc[-1])
                 for tf, f in frames.items()}
    market = MarketSection(as_of=AS_OF, produced_by="test", symbol=request.symbol, exchange=request.exchange,
                           source="builtin", scenario="uptrend", timeframes=summaries,
                           last_price=summaries[request.timeframes[0]].last_close)
    state, runtime = {"request": request, "market": market}, types.SimpleNamespace(context=services)
    levels = (await key_levels_node(state, runtime))["features"].key_levels
    volume = (await volume_node(state, runtime))["features"].volume
    return frames | {"_market": market}, levels, volume


async def test_nodes_cover_every_timeframe_with_sane_numbers(make_settings: Callable[..., Settings]) -> None:
    timeframes = ["5m", "15m", "1h", "4h", "1d", "1w"]
    frames, levels, volume = await run_nodes(make_settings(candle_limit=300), timeframes)
    market = frames["_market"]
    assert levels.as_of == volume.as_of == AS_OF
    assert levels.source_timeframe == "1d" and {lv.name for lv in levels.levels} == set(LEVEL_NAMES)
    for lv in levels.levels:
        assert lv.distance_pct == pytest.approx((market.last_price - lv.price) / lv.price * 100)
        expected = "at" if abs(lv.distance_pct) <= 0.05 else ("above" if market.last_price > lv.price else "below")
        assert lv.position == expected
    assert list(volume.by_timeframe) == timeframes
    for tf, report in volume.by_timeframe.items():
        frame = frames[tf]
        recent = frame.iloc[-PROFILE_WINDOW:]
        p = report.profile
        assert (p.candles, p.start, p.end) == (PROFILE_WINDOW, recent.index[0], recent.index[-1])
        assert recent["low"].min() <= p.value_area_low <= p.point_of_control <= p.value_area_high <= recent["high"].max()
        assert report.previous_profile is not None and report.previous_profile.end < p.start
        assert -20 <= report.obv_slope <= 20
        assert 1 <= len(report.waves) <= 6 and report.waves[-1].end == frame.index[-1]
        for before, after in zip(report.waves, report.waves[1:], strict=False):
            assert before.direction != after.direction and before.end < after.start
        for wave in report.waves:
            assert wave.volume > 0 and (wave.price_change > 0) == (wave.direction == "UP")


async def test_key_levels_from_smaller_timeframes_report_only_what_they_support(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(candle_limit=300)
    _, from_daily, _ = await run_nodes(settings, ["1h", "1d"])  # today's forming day from 1h in both runs
    _, from_4h, _ = await run_nodes(settings, ["1h", "4h"])
    _, from_15m, _ = await run_nodes(settings, ["5m", "15m"])
    _, from_weekly, _ = await run_nodes(settings, ["1w"])
    daily_prices = {lv.name: lv.price for lv in from_daily.levels}
    # 300 4h candles reach back to 10-01 12:00: 10-01 is not a complete day, so October is not a
    # complete month and only the previous month's extremes are missing.
    assert from_4h.source_timeframe == "4h"
    assert {lv.name for lv in from_4h.levels} == set(LEVEL_NAMES) - {"prev_month_high", "prev_month_low"}
    # The built-in 4h candles aggregate exactly into its 1d candles: the same days give the same levels.
    assert all(lv.price == pytest.approx(daily_prices[lv.name]) for lv in from_4h.levels)
    # 300 15m candles = 75 h: complete days 11-18 and 11-19 (a Thursday, its Monday is missing).
    assert from_15m.source_timeframe == "15m"
    assert {lv.name for lv in from_15m.levels} == {"daily_open", "prev_day_high", "prev_day_low"}
    assert from_weekly.source_timeframe == "none" and from_weekly.levels == []


def test_todays_open_is_the_forming_days_open_not_yesterdays() -> None:
    """At 13:37 the 1d frame ends with yesterday; today's open comes from today's first small candle."""
    from nodes.key_levels import with_forming_day

    days = pd.DataFrame(
        {"open": [100.0, 110.0], "high": [115.0, 120.0], "low": [95.0, 105.0], "close": [110.0, 118.0], "volume": [1.0, 1.0]},
        index=pd.DatetimeIndex(["2026-11-18", "2026-11-19"], tz="UTC", name="time"),
    )
    hours = pd.DataFrame(
        {"open": [118.5, 119.0], "high": [125.0, 121.0], "low": [117.0, 118.0], "close": [119.0, 120.0], "volume": [2.0, 3.0]},
        index=pd.DatetimeIndex(["2026-11-20 00:00", "2026-11-20 01:00"], tz="UTC", name="time"),
    )
    merged = with_forming_day(days, hours)
    assert merged.index[-1] == pd.Timestamp("2026-11-20", tz="UTC")
    assert merged.iloc[-1].tolist() == [118.5, 125.0, 117.0, 120.0, 5.0]
    assert with_forming_day(days, hours.iloc[:0]).equals(days)
    levels = {lv.name: lv.price for lv in key_levels(merged, 120.0)}
    assert levels["daily_open"] == 118.5 and levels["prev_day_high"] == 120.0
