"""The strategy node's fast paths give bit for bit what the straightforward code they replace gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nodes.strategies import SIGNAL_COLUMNS, registered_strategies, select, signal_frame
from nodes.strategies.sfp import _running_max
from nodes.strategy import analogs
from tools.backtest import run_backtest, trade_outcomes
from tools.indicators import enrich
from tools.pivots import _mean_true_range, true_range


def candles(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate(([close[0]], close[:-1]))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, n))
    index = pd.date_range("2026-01-01", periods=n, freq="h", tz="UTC")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": rng.uniform(1, 9, n)}, index=index)


def bits(values: np.ndarray) -> bytes:
    return np.asarray(values, dtype=float).tobytes()


@pytest.mark.parametrize("seed", range(6))
def test_trade_outcomes_and_analogs_match_the_full_backtest(seed: int) -> None:
    frame = enrich(candles(400, seed))
    rng = np.random.default_rng(seed)
    direction = rng.choice([0, 0, 0, 1, -1, np.nan], len(frame))
    side = np.sign(np.nan_to_num(direction))
    close = frame["close"].to_numpy()
    signals = pd.DataFrame(
        {
            "direction": direction,
            "stop": close * (1 - side * rng.uniform(-0.01, 0.05, len(frame))),
            "target": np.where(rng.random(len(frame)) < 0.3, np.nan, close * (1 + side * rng.uniform(-0.01, 0.08, len(frame)))),
        },
        index=frame.index,
    )
    for sig in [signals] + [s.evaluate(frame) for s in registered_strategies().values()]:
        trades = run_backtest(frame, sig).trades
        outcomes = trade_outcomes(frame, sig)
        assert outcomes.side.tolist() == [t.side for t in trades]
        assert bits(outcomes.return_pct) == bits([t.return_pct for t in trades])
        assert outcomes.is_open.tolist() == [t.is_open for t in trades]
        for today in (1, -1):
            closed = [t for t in trades if not t.is_open]
            same = [t for t in closed if t.side == today]

            def rate(chosen: list) -> float | None:
                return sum(t.return_pct > 0 for t in chosen) / len(chosen) if chosen else None

            assert analogs(frame, sig, today, 0.001, 5) == (len(same), rate(same), rate(closed))


def test_trade_outcomes_refuses_what_run_backtest_refuses() -> None:
    frame = enrich(candles(100, 1))
    signals = registered_strategies()["ema_trend"].evaluate(frame)
    broken = frame.copy()
    broken.iloc[5, broken.columns.get_loc("close")] = np.nan
    for call in (run_backtest, trade_outcomes):
        with pytest.raises(ValueError, match="NaN prices"):
            call(broken, signals)


def test_segmented_running_max_matches_one_accumulate_per_segment() -> None:
    rng = np.random.default_rng(0)
    for _ in range(500):
        n = int(rng.integers(1, 60))
        values = rng.integers(-4, 4, n).astype(float)
        values[rng.random(n) < 0.2] = np.nan
        starts = np.unique(np.concatenate(([0], rng.integers(1, n + 1, int(rng.integers(0, 6))))))
        starts = starts[starts < n]
        expected = np.empty(n)
        for begin, end in zip(starts, [*starts[1:], n], strict=True):
            expected[begin:end] = np.fmax.accumulate(values[begin:end])
        expected[np.isnan(values)] = np.nan
        assert bits(_running_max(values, starts)) == bits(expected)


def test_select_is_np_select() -> None:
    rng = np.random.default_rng(3)
    long, short = rng.random(50) < 0.3, rng.random(50) < 0.3
    a, b = rng.normal(size=50), rng.normal(size=50)
    for choices, default in (([1, -1], 0), ([a, b], np.nan), ([a, b], 0.0)):
        expected = np.select([long, short], choices, default)
        got = select([long, short], choices, default)
        assert got.dtype == expected.dtype and got.tobytes() == expected.tobytes()


def test_signal_frame_shape_and_dtypes() -> None:
    index = pd.date_range("2026-01-01", periods=4, freq="h", tz="UTC")
    frame = signal_frame(np.array([0, 1, -1, 0]), np.array([0.5, 0.6, np.nan, 0.2]), np.ones(4), np.full(4, 3.0), np.full(4, 2.0), index)
    assert list(frame.columns) == SIGNAL_COLUMNS
    assert frame.dtypes.tolist() == [np.dtype("int64")] + [np.dtype("float64")] * 3
    assert frame["confidence"].tolist() == [0.0, 0.6, 0.0, 0.0]
    assert frame["stop"].tolist() == [2.0, 1.0, 1.0, 2.0]


def test_mean_true_range_matches_np_mean_per_pivot() -> None:
    frame = candles(120, 4)
    high, low, close = (frame[c].to_numpy() for c in ("high", "low", "close"))
    ranges = true_range(high, low, close)
    positions = np.arange(0, 120, 3)
    for lookback in (1, 5, 20):
        expected = [np.mean(ranges[max(0, p - lookback) : p + 1]) for p in positions]
        assert bits(_mean_true_range(ranges, positions, lookback)) == bits(expected)
