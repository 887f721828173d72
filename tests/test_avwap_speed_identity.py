"""The anchored-VWAP node's batched paths give bit for bit what the straightforward per-anchor,
per-timeframe code gives: the same VWAP rows, the same reports, the same progress and errors."""

from __future__ import annotations

import asyncio
import math
import pickle
from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import nodes.anchored_vwap as node
from state.analysis import AnchoredVwap, TimeframeVwaps
from tools import avwap
from tools.avwap import (
    ALPHA,
    HORIZONS,
    KERNEL_FORM,
    SIGMA_0,
    WINDOW,
    Candles,
    Hyper,
    Targets,
    _inputs,
    _max_likelihood,
    choose_anchors_each,
    choose_anchors_in,
    posterior,
    project_vwap,
)
from tools import avwap_fit
from tools.avwap_fit import _prior_linear
from tools.frames import FrameCache, IndicatorFrame
from tools.market_data.builtin import BuiltinSource, builtin_markets
from tests.test_avwap_volume_identity import random_walk
from tools.pivots import (
    PivotRows,
    _left_prominence_by_kind,
    left_prominence,
    pivot_rows,
    true_range,
)

CLOCK = datetime(2026, 11, 20, 13, 37, tzinfo=UTC)
TIMEFRAMES = ["5m", "15m", "1h", "4h", "1d", "1w"]


def bits(values: np.ndarray) -> bytes:
    return np.asarray(values, dtype=float).tobytes()


def odd_frames() -> list[pd.DataFrame]:
    """Random walks with the candles that test a running sum's edges."""
    frames = [random_walk(n, seed) for seed, n in enumerate((300, 120, 25, 1))]
    zero_run = random_walk(200, 11)
    zero_run.iloc[150:170, zero_run.columns.get_loc("volume")] = 0.0  # no volume just after some anchors
    zero_run.iloc[-5:, zero_run.columns.get_loc("volume")] = 0.0  # nor at the end
    gaps = random_walk(200, 12)
    gaps.iloc[[40, 90], gaps.columns.get_loc("volume")] = np.nan
    gaps.iloc[[60, 130], gaps.columns.get_loc("close")] = np.nan
    gaps.iloc[170, gaps.columns.get_loc("high")] = np.inf
    signed_zeros = random_walk(60, 13)
    for column in ("high", "low", "close"):
        signed_zeros.iloc[20:30, signed_zeros.columns.get_loc(column)] = -0.0  # -0.0 * volume: a -0.0 running sum
    signed_zeros.iloc[30:35, signed_zeros.columns.get_loc("volume")] = -0.0
    flat = random_walk(100, 14)
    flat[["open", "high", "low", "close"]] = 50.0
    return [*frames, zero_run, gaps, signed_zeros, flat]


@pytest.mark.parametrize("case", range(len(odd_frames())))
def test_vwap_rows_are_each_anchors_own_vwap(case: int) -> None:
    candles = Candles.of(odd_frames()[case])
    n = len(candles.close)
    for positions in (list(range(n)), [n - 1, 0, n // 2, n // 2], []):
        rows = candles.vwaps(positions)
        assert rows.shape == (len(positions), n)
        for position, row in zip(positions, rows, strict=True):
            assert bits(row) == bits(candles.vwap(position)), position


def test_vwap_rows_refuse_positions_outside_the_frame_as_a_single_vwap_does() -> None:
    candles = Candles.of(random_walk(30, 1))
    for bad in (-1, 30):
        with pytest.raises(ValueError) as single:
            candles.vwap(bad)
        with pytest.raises(ValueError) as rows:
            candles.vwaps([3, bad])
        assert str(rows.value) == str(single.value)


def straightforward(loaded: IndicatorFrame) -> TimeframeVwaps:
    """A timeframe's report anchor by anchor, each VWAP projected alone."""
    candles = Candles.of(loaded.frame)
    vwaps = []
    for anchor in choose_anchors_in(candles):
        path = candles.vwap(anchor.position)
        if math.isnan(path[-1]):
            continue
        projection = project_vwap(path)
        vwaps.append(
            AnchoredVwap(
                anchor_kind=anchor.kind,
                anchor_time=anchor.time.to_pydatetime(),
                anchor_price=anchor.price,
                value=float(path[-1]),
                projection=projection.points,
                kernel=projection.kernel,
            )
        )
    return TimeframeVwaps(kernel=KERNEL_FORM, vwaps=vwaps)


def exactly(reports: list[TimeframeVwaps]) -> bytes:
    return pickle.dumps([report.model_dump() for report in reports])  # floats by their bits, -0.0 included


def builtin_frames(count: int) -> list[list[IndicatorFrame]]:
    cache = FrameCache(BuiltinSource(), source_key="builtin", limit=300)
    symbols = [market.symbol for market in builtin_markets()][:count]

    async def load() -> list[list[IndicatorFrame]]:
        return [[await cache.get(symbol, tf, CLOCK) for tf in TIMEFRAMES] for symbol in symbols]

    return asyncio.run(load())


def test_a_symbols_timeframes_projected_together_are_each_as_alone() -> None:
    odd = [IndicatorFrame("1h", frame) for frame in odd_frames()]
    for frames in [*builtin_frames(4), odd]:
        batched = node.timeframes_vwaps(frames)
        assert exactly(batched) == exactly([straightforward(loaded) for loaded in frames])
        assert exactly([node.timeframe_vwaps(loaded) for loaded in frames]) == exactly(batched)
    assert sum(len(report.vwaps) for report in node.timeframes_vwaps(odd)) > 0


def run_node(frames: dict[str, pd.DataFrame], progress: list[dict], monkeypatch: pytest.MonkeyPatch) -> dict:
    class Frames:
        async def get(self, symbol: str, timeframe: str, as_of: datetime) -> IndicatorFrame:
            return IndicatorFrame(timeframe, frames[timeframe])

    monkeypatch.setattr(node, "services", lambda runtime, request: SimpleNamespace(frames=Frames()))
    runtime = SimpleNamespace(stream_writer=progress.append)  # a bound method: a subclass's own append too
    state = {"request": SimpleNamespace(symbol="X/USDT"), "market": SimpleNamespace(timeframes=list(frames), as_of=CLOCK)}
    return asyncio.run(node.anchored_vwap(state, runtime))  # type: ignore[arg-type]


def test_the_node_reports_each_timeframe_as_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = dict(zip(TIMEFRAMES, odd_frames(), strict=False))
    progress: list[dict] = []
    report = run_node(frames, progress, monkeypatch)["levels"].anchored_vwap
    assert list(report.by_timeframe) == list(frames)
    expected = [straightforward(IndicatorFrame(tf, frame)) for tf, frame in frames.items()]
    assert exactly(list(report.by_timeframe.values())) == exactly(expected)
    assert [(p["timeframe"], p["done"], p["total"]) for p in progress] == [(tf, i, len(frames)) for i, tf in enumerate(frames, 1)]


def test_a_failing_timeframe_raises_after_the_progress_of_those_before_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # No volume column in the third timeframe: a timeframe-by-timeframe loop reports the first two, then raises.
    frames = {"5m": random_walk(300, 1), "15m": random_walk(300, 2), "1h": random_walk(300, 3).drop(columns="volume"), "4h": random_walk(300, 4)}
    with pytest.raises(KeyError, match="volume"):
        node.timeframe_vwaps(IndicatorFrame("1h", frames["1h"]))
    progress: list[dict] = []
    with pytest.raises(KeyError, match="volume"):
        run_node(frames, progress, monkeypatch)
    assert [(p["timeframe"], p["done"], p["total"]) for p in progress] == [("5m", 1, 4), ("15m", 2, 4)]


def kernels_formed_apart(n: int, h: Hyper) -> tuple[np.ndarray, np.ndarray]:
    """The training kernel (White and jitter added) and the cross kernel, each formed on its own."""
    x = _inputs(n)
    ahead = np.asarray(HORIZONS, dtype=float)[:, None] / WINDOW
    scaled, scaled_ahead = x / h.length_scale, ahead / h.length_scale
    train = h.amplitude * np.exp(-0.5 * (scaled - scaled.T) ** 2) + (h.amplitude * h.trend) * (x @ x.T + SIGMA_0**2)
    for i in range(n):
        train[i, i] += h.amplitude * h.noise
        train[i, i] += ALPHA
    cross = h.amplitude * np.exp(-0.5 * (scaled_ahead - scaled.T) ** 2) + (h.amplitude * h.trend) * (ahead @ x.T + SIGMA_0**2)
    return train, cross


def posterior_formed_apart(targets: Targets, h: Hyper) -> tuple[np.ndarray, np.ndarray]:
    from scipy.linalg.lapack import dpotrf, dpotrs, dtrtrs

    train, cross = kernels_formed_apart(len(targets.standard), h)
    factor = dpotrf(train, lower=1, clean=1)[0]
    crossed = cross @ dpotrs(factor, targets.standard, lower=1)[0]
    v = dtrtrs(factor, cross.T, lower=1)[0]
    explained = np.einsum("ij,ji->i", v.T, v)
    prior = (h.amplitude + (h.amplitude * h.trend) * _prior_linear(HORIZONS) + h.amplitude * h.noise) - explained
    prior[prior < 0] = 0.0
    return targets.scale * crossed + targets.mean, np.sqrt(prior * targets.scale**2)


@pytest.mark.parametrize("seed", range(4))
def test_posterior_is_the_one_of_kernels_formed_apart(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for n in (10, 23, 60):
        targets = Targets.of(1 + np.cumsum(rng.normal(0, 1e-3, n)))
        for h in [_max_likelihood(targets.standard), Hyper(rng.uniform(0.1, 3), 0.08, 30.0, 1e-2), Hyper(2.0, 0.16, 1e-3, 0.1)]:
            mean, sd = posterior(targets, HORIZONS, h)
            expected_mean, expected_sd = posterior_formed_apart(targets, h)
            assert bits(mean) == bits(expected_mean) and bits(sd) == bits(expected_sd), (n, h)


# --- Anchors of all timeframes at once, and the pivots and scores they are chosen from ---


def rough_walk(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Highs, lows and closes with ties (rounded prices) and, for some seeds, NaN, infinities and signed zeros."""
    rng = np.random.default_rng(seed)
    close = 100 + np.cumsum(rng.normal(0, 1, n))
    if seed % 3 == 0:
        close = np.round(close)
    high, low = close + rng.choice([0.0, 0.5, 1.0], n), close - rng.choice([0.0, 0.5, 1.0], n)
    if n and seed % 5 == 0:
        high[rng.integers(0, n, 3)] = rng.choice([np.nan, np.inf, -np.inf, 0.0, -0.0], 3)
        low[rng.integers(0, n, 3)] = rng.choice([np.nan, np.inf, -np.inf, 0.0, -0.0], 3)
    if n and seed % 7 == 0:
        close[rng.integers(0, n)] = np.nan
    if seed % 11 == 0:
        high[:], low[:], close[:] = 4.0, 4.0, 4.0  # flat: no pivot at all
    return high, low, close


def pivots_one_by_one(high: np.ndarray, low: np.ndarray, width: int, since: int) -> list[tuple[int, bool, float]]:
    """(row, is a swing high, price) of each swing pivot by its definition, a high before a low on one candle."""
    rows = []
    for p in range(max(width, since), len(high) - width):
        around = [*range(p - width, p), *range(p + 1, p + width + 1)]
        if all(high[p] > high[j] for j in around):
            rows.append((p, True, float(high[p])))
        if all(low[p] < low[j] for j in around):
            rows.append((p, False, float(low[p])))
    return rows


@pytest.mark.parametrize("seed", range(60))
def test_pivot_rows_are_the_pivots_one_by_one(seed: int) -> None:
    high, low, _ = rough_walk(int(np.random.default_rng(seed).integers(0, 90)), seed)
    for width in (1, 2, 3, 4):
        for since in (-2, 0, 3, len(high) // 2, len(high) + 4):
            found = pivot_rows(high, low, width, since)
            rows = list(zip(found.positions.tolist(), found.is_high.tolist(), found.prices.tolist(), strict=True))
            assert repr(rows) == repr(pivots_one_by_one(high, low, width, since)), (width, since)
            assert found.positions.dtype == np.intp and found.is_high.dtype == bool
    # Other dtypes take the kind-by-kind comparisons: the same pivots.
    as_float32 = pivot_rows(high.astype(np.float32), low.astype(np.float32), 3)
    assert as_float32.positions.tolist() == [p for p, _, _ in pivots_one_by_one(high.astype(np.float32), low.astype(np.float32), 3, 0)]


def prominence_one_by_one(high: np.ndarray, low: np.ndarray, close: np.ndarray, rows: PivotRows, lookback: int) -> np.ndarray:
    """`left_prominence` pivot by pivot, as `pivot_significance` defines it."""
    ranges = true_range(high, low, close)
    scores = []
    for p, is_high in zip(rows.positions.tolist(), rows.is_high.tolist(), strict=True):
        start = max(0, p - lookback)
        at_level = [q for q in range(start, p) if (high[q] >= high[p] if is_high else low[q] <= low[p])]
        first = at_level[-1] + 1 if at_level else start
        move = high[p] - np.min(low[first : p + 1]) if is_high else np.max(high[first : p + 1]) - low[p]
        unit = np.add.reduce(ranges[start : p + 1]) / (p + 1 - start)
        scores.append(move / unit if unit > 0 else 0.0)
    return np.array(scores, dtype=float)


@pytest.mark.parametrize("seed", range(80))
def test_left_prominence_is_each_pivots_own_move(seed: int) -> None:
    high, low, close = rough_walk(int(np.random.default_rng(seed).integers(1, 200)), seed)
    with np.errstate(all="ignore"):
        for since, lookback in ((0, 20), (len(high) // 2, 20), (0, 1), (0, 5)):
            rows = pivot_rows(high, low, 3, since)
            scores = left_prominence(high, low, close, rows, lookback)
            kind_by_kind = _left_prominence_by_kind(high, low, close, rows, lookback)
            assert bits(scores) == bits(kind_by_kind), (since, lookback)
            if not (np.isnan(high).any() or np.isnan(low).any()):  # NaN: the loop's min/max and numpy's differ by design
                assert bits(scores) == bits(prominence_one_by_one(high, low, close, rows, lookback)), (since, lookback)
        # Rows out of the frame or no lookback at all: the kind-by-kind code's result or error.
        odd = PivotRows(np.array([len(high) + 1, -1]), np.array([True, False]), np.zeros(2))
        for lookback in (0, 20):
            for pivots in (odd, pivot_rows(high, low, 3)):
                try:
                    expected = bits(_left_prominence_by_kind(high, low, close, pivots, lookback))
                except Exception as error:  # noqa: BLE001
                    with pytest.raises(type(error)):
                        left_prominence(high, low, close, pivots, lookback)
                else:
                    assert bits(left_prominence(high, low, close, pivots, lookback)) == expected


def candles_of(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> Candles:
    index = pd.date_range("2026-01-01", periods=len(close), freq="1h", tz=UTC)
    return Candles(high, low, close, np.ones(len(close)), index)


@pytest.mark.parametrize("seed", range(40))
def test_anchors_chosen_together_are_each_frames_own(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = rng.choice([0, 1, 7, 25, 60, 130, 300], int(rng.integers(1, 7)))
    frames = [candles_of(*rough_walk(int(n), seed * 10 + i)) for i, n in enumerate(lengths)]
    with np.errstate(all="ignore"):
        for width, recent, per_kind in ((3, 120, 2), (2, 40, 1), (1, 300, 3), (3, 120, 0), (4, 10, 5)):
            alone = [choose_anchors_in(candles, width, recent, per_kind) for candles in frames]
            together = choose_anchors_each(frames, width, recent, per_kind)
            assert repr(together) == repr(alone), (width, recent, per_kind)  # repr: NaN scores compare equal


def test_anchors_of_a_symbols_timeframes_are_each_timeframes_own() -> None:
    for frames in builtin_frames(6):
        candles = [Candles.of(loaded.frame) for loaded in frames]
        assert choose_anchors_each(candles) == [choose_anchors_in(each) for each in candles]


def test_progress_comes_as_each_timeframe_is_anchored_before_the_batched_projections(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = {tf: random_walk(120, seed) for seed, tf in enumerate(TIMEFRAMES)}
    steps: list[str] = []
    prepare, finish = avwap.prepare_projections, avwap.finish_projections
    monkeypatch.setattr(avwap, "prepare_projections", lambda paths: steps.append("prepare") or prepare(paths))
    monkeypatch.setattr(avwap, "finish_projections", lambda prepared: steps.append("finish") or finish(prepared))
    progress: list[dict] = []
    report = run_node(frames, _Logged(progress, steps), monkeypatch)["levels"].anchored_vwap
    assert steps == ["prepare", "progress"] * len(frames) + ["finish"]
    assert [(p["timeframe"], p["done"], p["total"]) for p in progress] == [(tf, i, len(frames)) for i, tf in enumerate(frames, 1)]
    expected = [straightforward(IndicatorFrame(tf, frame)) for tf, frame in frames.items()]
    assert exactly(list(report.by_timeframe.values())) == exactly(expected)


class _Logged(list):
    """A progress list that also logs each report among the other steps."""

    def __init__(self, progress: list[dict], steps: list[str]) -> None:
        super().__init__()
        self.progress, self.steps = progress, steps

    def append(self, item: dict) -> None:
        self.steps.append("progress")
        self.progress.append(item)


def test_a_failing_projection_raises_the_first_failing_timeframes_error(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = {tf: random_walk(60 + 10 * seed, seed) for seed, tf in enumerate(TIMEFRAMES)}
    finish = avwap.finish_projections

    def fails_on_long_windows(prepared: list) -> list:
        lengths = sorted({len(each.values) for each in prepared})
        if any(n >= 60 for n in lengths):  # frames 1h on (90+ candles) fail, each with its own message
            raise np.linalg.LinAlgError(f"lengths {lengths}")
        return finish(prepared)

    monkeypatch.setattr(avwap, "finish_projections", fails_on_long_windows)
    with pytest.raises(np.linalg.LinAlgError) as alone:
        for tf, frame in frames.items():
            node.timeframe_vwaps(IndicatorFrame(tf, frame))
    progress: list[dict] = []
    with pytest.raises(np.linalg.LinAlgError) as batched:
        run_node(frames, progress, monkeypatch)
    assert str(batched.value) == str(alone.value)


def test_vwap_rows_of_several_frames_are_each_frames_own() -> None:
    odd = [Candles.of(frame) for frame in odd_frames()]
    rng = np.random.default_rng(7)
    for frames in ([Candles.of(random_walk(200, seed)) for seed in range(5)], odd, [odd[4], odd[5]], [odd[0]]):
        positions = [sorted(rng.integers(0, len(c.close), int(rng.integers(0, 6))).tolist()) if len(c.close) else [] for c in frames]
        together = avwap.vwaps_each(frames, positions)
        assert len(together) == len(frames)
        for candles, where, rows in zip(frames, positions, together, strict=True):
            assert rows.shape == (len(where), len(candles.close)) and bits(rows) == bits(candles.vwaps(where))
    frames = [Candles.of(random_walk(50, seed)) for seed in range(3)]
    with pytest.raises(ValueError) as alone:
        frames[1].vwaps([50])
    with pytest.raises(ValueError) as together:
        avwap.vwaps_each(frames, [[3], [50], [-1]])
    assert str(together.value) == str(alone.value)


# --- Fits batched by length: targets, grid squares and posteriors of each fit as alone ---


def fit_values(seed: int) -> list[np.ndarray]:
    """VWAP windows of a few shared lengths (batched) and of lone lengths, flat and NaN ones among them."""
    rng = np.random.default_rng(seed)
    lengths = [60] * 7 + [23] * 3 + [41, 10, 59] + [37] * 4
    values = [100 * np.exp(np.cumsum(rng.normal(0, 1e-3 * 10.0 ** rng.integers(-2, 2), n))) for n in lengths]
    values[3] = np.full(60, 42.0)  # no spread: scale 1
    values[8][5] = np.inf  # standardises to NaN
    return values


@pytest.mark.parametrize("seed", range(6))
def test_targets_of_fits_of_one_length_are_each_fits_own(seed: int) -> None:
    values = fit_values(seed)
    values.append(values[0].astype(np.float32))
    values += [v.astype(np.float32) for v in values[-3:]] + [values[-1].astype(np.float32)] * 2  # a float32 length group
    with np.errstate(all="ignore"):
        batched = avwap_fit._targets(values)
        for fit, v in zip(batched, values, strict=True):
            alone = Targets.of(v / float(v[-1]))
            assert bits(fit.standard) == bits(alone.standard) and fit.standard.dtype == alone.standard.dtype
            assert repr((fit.mean, fit.scale)) == repr((alone.mean, alone.scale))


@pytest.mark.parametrize("seed", range(6))
def test_grid_squares_of_fits_of_one_length_are_each_fits_own(seed: int) -> None:
    with np.errstate(all="ignore"):
        standards = [fit.standard for fit in avwap_fit._targets(fit_values(seed))]
        squares = avwap_fit._grid_squares_each(standards)
        for row, y in zip(squares, standards, strict=True):
            assert bits(row) == bits(avwap_fit._grid_squares(y))


@pytest.mark.parametrize("seed", range(4))
def test_posteriors_of_fits_of_one_length_are_each_fits_own(seed: int) -> None:
    rng = np.random.default_rng(seed)
    with np.errstate(all="ignore"):
        targets = [fit for fit in avwap_fit._targets(fit_values(seed)) if np.isfinite(fit.standard).all()]
    hypers = avwap_fit._max_likelihoods([fit.standard for fit in targets])
    hypers = [h if i % 3 else Hyper(float(rng.uniform(0.1, 3)), h.length_scale, h.trend, h.noise) for i, h in enumerate(hypers)]
    means, sds = avwap_fit._posteriors(targets, HORIZONS, hypers)
    assert len({len(fit.standard) for fit in targets}) < len(targets) - 3  # lengths shared: the batched path
    for fit, h, mean, sd in zip(targets, hypers, means, sds, strict=True):
        expected_mean, expected_sd = posterior_formed_apart(fit, h)  # the kernel factored from its own copy
        assert bits(mean) == bits(expected_mean) and bits(sd) == bits(expected_sd), h


def test_every_grid_designs_training_kernel_is_symmetric_so_it_is_factored_in_place() -> None:
    for n in range(avwap.MIN_POINTS, WINDOW + 1):
        for length_scale in avwap.LENGTH_SCALES:
            assert avwap_fit._design(n, length_scale, HORIZONS).symmetric, (n, length_scale)


def test_vwap_rows_of_frames_with_whole_volumes_are_each_frames_own() -> None:
    # Integer volumes take the per-frame typical volumes (float64 prices and volumes are stacked first).
    walks = [Candles.of(random_walk(120, seed)) for seed in range(3)]
    whole_volume = Candles(walks[2].high, walks[2].low, walks[2].close, np.round(walks[2].volume).astype(np.int64), walks[2].index)
    frames = [walks[0], walks[1], whole_volume]
    positions = [[100, 30], [119, 0, 60], [5]]
    for rows, candles, where in zip(avwap.vwaps_each(frames, positions), frames, positions, strict=True):
        assert bits(rows) == bits(candles.vwaps(where))
