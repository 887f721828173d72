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
from tools.avwap import ALPHA, HORIZONS, KERNEL_FORM, SIGMA_0, WINDOW, Candles, Hyper, Targets, _inputs, _max_likelihood, choose_anchors_in, posterior, project_vwap
from tools.avwap_fit import _prior_linear
from tools.frames import FrameCache, IndicatorFrame
from tools.market_data.builtin import BuiltinSource, builtin_markets

CLOCK = datetime(2026, 11, 20, 13, 37, tzinfo=UTC)
TIMEFRAMES = ["5m", "15m", "1h", "4h", "1d", "1w"]


def bits(values: np.ndarray) -> bytes:
    return np.asarray(values, dtype=float).tobytes()


def walk(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    spread = close * rng.uniform(0.002, 0.01, n)
    index = pd.date_range("2026-01-01", periods=n, freq="1h", tz=UTC)
    columns = {"open": close, "high": close + spread, "low": close - spread, "close": close, "volume": rng.uniform(1, 10, n)}
    return pd.DataFrame(columns, index=index)


def odd_frames() -> list[pd.DataFrame]:
    """Random walks with the candles that test a running sum's edges."""
    frames = [walk(n, seed) for seed, n in enumerate((300, 120, 25, 1))]
    zero_run = walk(200, 11)
    zero_run.iloc[150:170, zero_run.columns.get_loc("volume")] = 0.0  # no volume just after some anchors
    zero_run.iloc[-5:, zero_run.columns.get_loc("volume")] = 0.0  # nor at the end
    gaps = walk(200, 12)
    gaps.iloc[[40, 90], gaps.columns.get_loc("volume")] = np.nan
    gaps.iloc[[60, 130], gaps.columns.get_loc("close")] = np.nan
    gaps.iloc[170, gaps.columns.get_loc("high")] = np.inf
    signed_zeros = walk(60, 13)
    for column in ("high", "low", "close"):
        signed_zeros.iloc[20:30, signed_zeros.columns.get_loc(column)] = -0.0  # -0.0 * volume: a -0.0 running sum
    signed_zeros.iloc[30:35, signed_zeros.columns.get_loc("volume")] = -0.0
    flat = walk(100, 14)
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
    candles = Candles.of(walk(30, 1))
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
    runtime = SimpleNamespace(stream_writer=progress.append)
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
    frames = {"5m": walk(300, 1), "15m": walk(300, 2), "1h": walk(300, 3).drop(columns="volume"), "4h": walk(300, 4)}
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
