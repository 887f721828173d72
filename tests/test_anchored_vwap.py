"""Anchored VWAPs: the value by hand, the anchor choice, no look-ahead, the GP projection, the node."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
from langgraph.runtime import Runtime

from nodes.anchored_vwap import anchored_vwap as anchored_vwap_node
from nodes.market_data import summarize
from state import Settings
from state.sections import MarketSection, RunRequest
from tools.avwap import (
    ALPHA,
    HORIZONS,
    KERNEL_FORM,
    PIVOT_WIDTH,
    SIGMA_0,
    WINDOW,
    Targets,
    _inputs,
    _max_likelihood,
    anchored_vwap,
    choose_anchors,
    pivot_significance,
    posterior,
    project_vwap,
    select_anchors,
)
from tools.context import build_services


def frame_of(high: list[float], low: list[float], close: list[float], volume: list[float]) -> pd.DataFrame:
    index = pd.date_range("2026-01-01", periods=len(close), freq="1h", tz=UTC)
    return pd.DataFrame({"open": close, "high": high, "low": low, "close": close, "volume": volume}, index=index)


def test_vwap_of_four_candles_by_hand() -> None:
    # Typical prices (h+l+c)/3: 10, 12, 10, 15; volumes 1, 2, 3, 4.
    frame = frame_of([11, 13, 12, 16], [9, 11, 9, 13], [10, 12, 9, 16], [1, 2, 3, 4])
    from_second = anchored_vwap(frame, 1)
    assert math.isnan(from_second[0])
    # 12*2 / 2; (24 + 30) / 5; (24 + 30 + 60) / 9
    assert from_second[1:] == pytest.approx([12.0, 10.8, 114 / 9])
    # From the first candle: (10 + 24 + 30 + 60) / 10
    assert anchored_vwap(frame, 0)[3] == pytest.approx(12.4)
    assert np.isnan(anchored_vwap(frame, 3)[:3]).all() and anchored_vwap(frame, 3)[3] == pytest.approx(15.0)


def test_vwap_is_undefined_until_volume_trades() -> None:
    frame = frame_of([11, 13, 12, 16], [9, 11, 9, 13], [10, 12, 9, 16], [1, 0, 3, 4])
    vwap = anchored_vwap(frame, 1)
    assert np.isnan(vwap[:2]).all()
    assert vwap[2:] == pytest.approx([10.0, (30 + 60) / 7])
    with pytest.raises(ValueError):
        anchored_vwap(frame, 4)


def zigzag() -> pd.DataFrame:
    """Closes stepping by 1: peaks A 106 @6, C 120 @26, E 113 @39, G 94 @66; troughs B 103 @9, D 110 @36, F 90 @62, H 92 @68."""
    turns = [(0, 100), (6, 106), (9, 103), (26, 120), (36, 110), (39, 113), (62, 90), (66, 94), (68, 92), (76, 100)]
    close = np.interp(np.arange(turns[-1][0] + 1), *zip(*turns, strict=True))
    return frame_of(list(close + 0.5), list(close - 0.5), list(close), [1.0] * len(close))


def test_anchors_are_the_swings_with_the_largest_left_prominence() -> None:
    frame = zigzag()
    assert len(frame) == 77
    # Every step candle has a true range of 1.5, the first candle 1.0.
    # C: nothing as high in the 20 candles before; lowest low since is 102.5 -> 18 / 1.5 = 12.
    # A: 106.5 - 99.5 over candles 0..6 with mean range 10/7 -> 4.9.  E: 4/1.5, G: 5/1.5.
    # F: 110.5 - 89.5 = 21 -> 14.  D: low last seen at row 16, highest high since 120.5 -> 11 / 1.5.
    # H (92): price was lower at F six candles earlier, so only 94.5 - 91.5 = 3 -> 2, though the fall
    # within its 20-candle window was 13: a pullback low after a big swing is not a big swing.
    scored = {(a.kind, a.position): a.significance for a in pivot_significance(frame)}
    assert scored == pytest.approx(
        {
            ("swing_high", 6): 4.9,
            ("swing_low", 9): 4 / 1.45,
            ("swing_high", 26): 12.0,
            ("swing_low", 36): 11 / 1.5,
            ("swing_high", 39): 4 / 1.5,
            ("swing_low", 62): 14.0,
            ("swing_high", 66): 5 / 1.5,
            ("swing_low", 68): 2.0,
        }
    )
    chosen = choose_anchors(frame)
    assert [(a.kind, a.position) for a in chosen] == [
        ("swing_high", 26),
        ("swing_high", 6),
        ("swing_low", 62),
        ("swing_low", 36),
    ]
    assert [a.price for a in chosen] == [120.5, 106.5, 89.5, 109.5]
    # Only the newest 40 candles (rows 37..76) are recent: D and the older peaks drop out.
    recent = choose_anchors(frame, recent=40)
    assert [(a.kind, a.position) for a in recent] == [
        ("swing_high", 66),
        ("swing_high", 39),
        ("swing_low", 62),
        ("swing_low", 68),
    ]


def random_walk(n: int = 300, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    spread = close * rng.uniform(0.002, 0.01, n)
    return frame_of(list(close + spread), list(close - spread), list(close), list(rng.uniform(1, 10, n)))


def test_no_look_ahead_in_anchors_or_values() -> None:
    frame = random_walk()
    full_scored = pivot_significance(frame)
    full_anchors = [(a.kind, a.position) for a in choose_anchors(frame)]
    differed = 0
    for t in range(40, len(frame), 9):
        seen = frame.iloc[: t + 1]
        anchors = choose_anchors(seen)
        # Read at t from the full data: only pivots confirmed by t, scores as the full data has them.
        known = [a for a in full_scored if a.position + PIVOT_WIDTH <= t]
        assert anchors == select_anchors(known, newest=t)
        assert all(a.position + PIVOT_WIDTH <= t for a in anchors)
        differed += [(a.kind, a.position) for a in anchors] != full_anchors
        for anchor in anchors:
            truncated, full = anchored_vwap(seen, anchor.position), anchored_vwap(frame, anchor.position)
            assert np.array_equal(truncated, full[: t + 1], equal_nan=True)
    assert differed > 10  # the truncation did change the answer, so the equalities above were tested


def test_projection_is_deterministic_and_follows_a_rising_vwap() -> None:
    vwap = np.concatenate([np.full(5, np.nan), 100 + 0.5 * np.arange(80)])
    first, second = project_vwap(vwap), project_vwap(vwap.copy())
    assert first == second
    assert "RBF" in first.kernel and "DotProduct" in first.kernel and "WhiteKernel" in first.kernel
    points = first.points
    assert [p.candles_ahead for p in points] == [1, 3, 6, 12]
    last = vwap[-1]
    means = [p.mean for p in points]
    assert all(later > earlier for earlier, later in pairwise([last, *means]))
    # On a straight line the forecast is the line: 139.5 + 0.5 * k, to well under one step.
    assert means == pytest.approx([last + 0.5 * p.candles_ahead for p in points], abs=0.05)
    widths = [p.upper - p.lower for p in points]
    assert all(later > earlier for earlier, later in pairwise(widths))
    assert all(p.lower <= p.mean <= p.upper for p in points)


def test_projection_band_on_a_real_path_and_the_short_path_guard() -> None:
    frame = random_walk(seed=3)
    for anchor in choose_anchors(frame):
        vwap = anchored_vwap(frame, anchor.position)
        points = project_vwap(vwap).points
        if np.count_nonzero(~np.isnan(vwap)) < 10:
            assert points == []
            continue
        widths = [p.upper - p.lower for p in points]
        assert all(p.lower <= p.mean <= p.upper for p in points)
        assert all(later > earlier for earlier, later in pairwise(widths))
    short = anchored_vwap(frame, len(frame) - 9)  # 9 values since the anchor
    assert project_vwap(short).points == [] and "need 10" in project_vwap(short).kernel


def sklearn_projection(y: np.ndarray, amplitude: float, length: float, trend: float, noise: float) -> tuple:
    """The projection as sklearn computes it: the reference `posterior` reproduces without its overhead."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import (
        RBF,
        ConstantKernel,
        DotProduct,
        WhiteKernel,
    )

    kernel = (
        ConstantKernel(amplitude, "fixed") * RBF(length, "fixed")
        + ConstantKernel(amplitude * trend, "fixed") * DotProduct(SIGMA_0, "fixed")
        + WhiteKernel(amplitude * noise, "fixed")
    )
    model = GaussianProcessRegressor(kernel=kernel, alpha=ALPHA, normalize_y=True, optimizer=None)
    model.fit(_inputs(len(y)), y)
    mean, std = model.predict(np.asarray(HORIZONS, dtype=float)[:, None] / WINDOW, return_std=True)
    return mean, std, repr(model.kernel_)


def test_posterior_equals_sklearns_gaussian_process() -> None:
    frame = random_walk(seed=11)
    paths = [anchored_vwap(frame, anchor.position) for anchor in choose_anchors(frame)]
    paths += [100 + 0.5 * np.arange(80.0), np.full(30, 42.0), 100 + np.sin(np.arange(10.0))]  # a line, flat, the shortest fit
    compared = 0
    for path in paths:
        defined = path[~np.isnan(path)][-WINDOW:]
        if len(defined) < 10:
            continue
        y = defined / defined[-1]
        targets = Targets.of(y)
        hyper = _max_likelihood(targets.standard)
        mean, std = posterior(targets, HORIZONS, hyper)
        expected_mean, expected_std, expected_kernel = sklearn_projection(
            y, hyper.amplitude, hyper.length_scale, hyper.trend, hyper.noise
        )
        assert mean == pytest.approx(expected_mean, rel=1e-9, abs=1e-12)
        assert std == pytest.approx(expected_std, rel=1e-9, abs=1e-12)
        assert hyper.describe() == expected_kernel
        compared += 1
    assert compared >= 5


async def test_node_reports_every_timeframe_within_its_price_range() -> None:
    timeframes = ["5m", "15m", "1h", "4h", "1d", "1w"]
    as_of = datetime(2026, 11, 20, 13, 37, tzinfo=UTC)
    request = RunRequest(
        symbol="BTC/USDT", source="builtin", scenario="uptrend", timeframes=timeframes, decision_timeframe="1h", as_of=as_of
    )
    services = build_services(Settings(_env_file=None), request)
    frames = {tf: await services.frames.get(request.symbol, tf, as_of) for tf in timeframes}
    summaries = {tf: summarize(loaded) for tf, loaded in frames.items()}
    market = MarketSection(
        as_of=as_of,
        produced_by="market_data",
        symbol=request.symbol,
        exchange=request.exchange,
        source="builtin",
        scenario="uptrend",
        timeframes=summaries,
        last_price=summaries["5m"].last_close,
    )
    progress: list[dict] = []
    runtime = Runtime(context=services, store=None, stream_writer=progress.append, previous=None)
    update = await anchored_vwap_node({"request": request, "market": market}, runtime)
    # One progress report per timeframe, in order, for the run's event stream.
    assert [(p["timeframe"], p["done"], p["total"]) for p in progress] == [(tf, i, 6) for i, tf in enumerate(timeframes, start=1)]
    report = update["levels"].anchored_vwap
    assert report.as_of == as_of and set(report.by_timeframe) == set(timeframes)
    assert update["audit"][0].produced_by == "anchored_vwap"
    for tf, vwaps in report.by_timeframe.items():
        frame = frames[tf].frame
        low, high = float(frame["low"].min()), float(frame["high"].max())
        assert 1 <= len(vwaps.vwaps) <= 4, tf
        assert vwaps.kernel == KERNEL_FORM and all("RBF" in v.kernel for v in vwaps.vwaps if v.projection)
        for kind in ("swing_high", "swing_low"):
            assert sum(v.anchor_kind == kind for v in vwaps.vwaps) <= 2
        for vwap in vwaps.vwaps:
            row = frame.loc[pd.Timestamp(vwap.anchor_time)]
            assert vwap.anchor_time < as_of and frame.index[0] <= pd.Timestamp(vwap.anchor_time)
            assert vwap.anchor_price == (row["high"] if vwap.anchor_kind == "swing_high" else row["low"])
            assert low <= vwap.value <= high, (tf, vwap)
            assert len(vwap.projection) in (0, 4)
            assert all(p.lower <= p.mean <= p.upper for p in vwap.projection)
