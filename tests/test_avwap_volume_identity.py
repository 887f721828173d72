"""Work done for several VWAPs or windows at once gives each exactly the numbers it gets alone."""

from __future__ import annotations

from datetime import UTC

import numpy as np
import pandas as pd
import pytest

from nodes.volume import PROFILE_WINDOW, describe
from tools.avwap import HORIZONS, Targets, anchored_vwap, choose_anchors, posterior, project_vwap, project_vwaps
from tools.avwap_fit import _max_likelihoods, _posteriors
from tools.indicators import enrich
from tools.volume_profile import value_area, volume_by_bin, volume_by_bins


def random_walk(n: int = 300, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    spread = close * rng.uniform(0.002, 0.01, n)
    index = pd.date_range("2026-01-01", periods=n, freq="1h", tz=UTC)
    columns = {"open": close, "high": close + spread, "low": close - spread, "close": close, "volume": rng.uniform(1, 10, n)}
    return pd.DataFrame(columns, index=index)


def vwap_paths() -> list[np.ndarray]:
    """The anchors' VWAPs of a random walk plus paths of other lengths: a line, a flat one, too short ones."""
    frame = random_walk(seed=11)
    paths = [anchored_vwap(frame, anchor.position) for anchor in choose_anchors(frame)]
    return paths + [100 + 0.5 * np.arange(80.0), np.full(30, 42.0), 100 + np.sin(np.arange(12.0)), np.arange(9.0)]


def test_projecting_vwaps_together_gives_each_its_lone_projection() -> None:
    paths = vwap_paths()
    together = project_vwaps(paths)
    assert together == [project_vwap(path) for path in paths]  # the same doubles, not approximately
    assert [len(p.points) for p in together][-4:] == [4, 4, 4, 0] and "need 10" in together[-1].kernel


def test_posteriors_of_fits_of_mixed_lengths_are_each_fits_own() -> None:
    targets = [Targets.of(path[~np.isnan(path)][-60:] / path[-1]) for path in vwap_paths()[:-1]]
    hypers = _max_likelihoods([fit.standard for fit in targets])
    means, sds = _posteriors(targets, HORIZONS, hypers)
    for fit, hyper, mean, sd in zip(targets, hypers, means, sds, strict=True):
        alone_mean, alone_sd = posterior(fit, HORIZONS, hyper)
        assert np.array_equal(mean, alone_mean) and np.array_equal(sd, alone_sd)


def test_windows_binned_together_are_each_binned_as_alone() -> None:
    frame = random_walk(seed=3)
    low, high, volume = (frame[c].to_numpy(copy=True) for c in ("low", "high", "volume"))
    high[[5, 150, 151]] = low[[5, 150, 151]]  # flat candles in both windows
    windows = [(low[i : i + 100], high[i : i + 100], volume[i : i + 100]) for i in (0, 100, 200)]
    windows.append((np.full(100, 7.0), np.full(100, 7.0), np.ones(100)))  # a window at one price
    edges, hist = volume_by_bins(*(np.stack(columns) for columns in zip(*windows, strict=True)))
    for (lows, highs, volumes), row_edges, row_hist in zip(windows, edges, hist, strict=True):
        alone_edges, alone_hist = volume_by_bin(lows, highs, volumes)
        assert np.array_equal(row_edges, alone_edges) and np.array_equal(row_hist, alone_hist)


def test_point_of_control_is_the_fullest_bin_nearest_the_middle_then_the_lower() -> None:
    edges = np.linspace(100.0, 150.0, 51)
    hist = np.ones(50)
    hist[[10, 39]] = 5.0  # equally far from the middle (between bins 24 and 25): the lower wins
    assert value_area(edges, hist).point_of_control == pytest.approx(110.5)
    hist[30] = 5.0  # now nearer the middle
    assert value_area(edges, hist).point_of_control == pytest.approx(130.5)


@pytest.mark.parametrize("n", [60, 150, 250])
def test_described_profiles_are_the_newest_blocks_of_candles(n: int) -> None:
    frame = enrich(random_walk(n, seed=5))
    picture = describe(frame)
    size = min(n, PROFILE_WINDOW)
    blocks = [slice(n - size, n)] + ([slice(n - 2 * size, n - size)] if n >= 2 * PROFILE_WINDOW else [])
    profiles = [picture.profile] + ([picture.previous_profile] if picture.previous_profile else [])
    assert len(profiles) == len(blocks)
    for block, profile in zip(blocks, profiles, strict=True):
        window = frame.iloc[block]
        found = value_area(*volume_by_bin(window["low"].to_numpy(), window["high"].to_numpy(), window["volume"].to_numpy()))
        assert (profile.start, profile.end, profile.candles) == (window.index[0], window.index[-1], size)
        assert (profile.point_of_control, profile.value_area_low, profile.value_area_high) == (
            found.point_of_control,
            found.value_area_low,
            found.value_area_high,
        )
