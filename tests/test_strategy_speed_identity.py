"""The strategy node's fast paths give bit for bit what the straightforward code they replace gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nodes.strategies import SIGNAL_COLUMNS, registered_strategies, select, signal_frame
from nodes.strategies.sfp import _swing_levels
from nodes.strategy import analogs
from tools.backtest import run_backtest, trade_outcomes
from tools.indicators import enrich
from tools.pivots import PivotRows, _mean_true_range, pivot_rows, true_range


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


def stepwise_swing_levels(pivots: PivotRows, price: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Candle by candle: the last level confirmed before it, and whether no price since went above it
    (a `groupby.cummax` of the prices since: NaN right after a NaN price, so that candle is fresh)."""
    from nodes.strategies.sfp import PIVOT_WIDTH

    mine = pivots.is_high == (kind == "high")
    confirmed_at = {
        int(row) + PIVOT_WIDTH: value
        for row, value in zip(pivots.positions[mine].tolist(), pivots.prices[mine].tolist(), strict=True)
        if not np.isnan(value)
    }
    known, fresh = np.full(len(price), np.nan), np.zeros(len(price), dtype=bool)
    level, highest = np.nan, np.nan  # the level in force and the highest price since it was confirmed
    previous = np.nan
    for i, value in enumerate(price.tolist()):
        if i - 1 in confirmed_at:
            level, highest, previous = confirmed_at[i - 1], np.nan, np.nan
        known[i] = level
        through = level if kind == "high" else -level
        fresh[i] = not np.isnan(level) and (np.isnan(previous) or highest <= through)
        if not np.isnan(value):
            highest = value if np.isnan(highest) else max(highest, value)
        previous = value
    return known, fresh


def test_swing_levels_match_the_candle_by_candle_walk() -> None:
    rng = np.random.default_rng(0)
    for case in range(400):
        n = int(rng.integers(1, 120))
        high = np.round(100 + rng.normal(0, 1, n).cumsum(), 0 if case % 2 else 2)  # rounded: ties at the level
        low = high - np.round(rng.uniform(0, 2, n), 1)
        for column in (high, low):
            column[rng.random(n) < rng.uniform(0, 0.1)] = np.nan
        if case % 7 == 0:
            low[rng.random(n) < 0.2] = 0.0  # -0.0 as a swing low's "price"
        pivots = pivot_rows(high, low, 3)
        for price, kind in ((high, "high"), (-low, "low")):
            got_known, got_fresh = _swing_levels(pivots, price, kind)
            known, fresh = stepwise_swing_levels(pivots, price, kind)
            assert bits(got_known) == bits(known) and got_fresh.tolist() == fresh.tolist()


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


# --- the node's array path: the strategies' `signals` without the frame `evaluate` builds ----------------
def edge_frames() -> list[pd.DataFrame]:
    """Indicator frames the strategies must survive: real-looking, short, flat, gapped by NaN, empty."""
    frames = [enrich(candles(n, seed)) for n, seed in ((300, 11), (300, 12), (120, 13), (40, 14), (12, 15), (1, 16))]
    flat = candles(200, 17)
    flat[["open", "high", "low", "close"]] = 100.0
    frames.append(enrich(flat))
    stepped = candles(200, 18)
    stepped[["open", "high", "low", "close"]] = stepped[["open", "high", "low", "close"]].round(0)
    frames.append(enrich(stepped))
    nan_rows = enrich(candles(200, 19))
    nan_rows.iloc[[50, 51, 120], [nan_rows.columns.get_loc(c) for c in ("high", "low", "close", "atr", "bb_width")]] = np.nan
    frames.append(nan_rows)
    frames.append(enrich(candles(300, 20)).iloc[:0])
    return frames


def outcome(call, *args):
    """A call's result, or its error as (type, message): both paths must fail alike."""
    try:
        return call(*args)
    except Exception as error:  # noqa: BLE001 - the error itself is what is compared
        return (type(error), str(error))


@pytest.mark.parametrize("name", sorted(registered_strategies()))
def test_signal_columns_match_the_evaluated_frame(name: str) -> None:
    import dataclasses

    from nodes.strategies import SignalArrays, signal_columns
    from tools.indicators import column_arrays

    strategy = registered_strategies()[name]
    assert strategy.signals is not None, "every built-in strategy offers the array path"
    frame_only = dataclasses.replace(strategy, signals=None)
    for frame in edge_frames():
        fast, slow = outcome(signal_columns, strategy, frame), outcome(signal_columns, frame_only, frame)
        if isinstance(slow, tuple) and isinstance(slow[0], type):
            assert fast == slow
            continue
        evaluated = strategy.evaluate(frame)
        assert isinstance(fast[4], SignalArrays) and isinstance(slow[4], pd.DataFrame)
        for got, want, expected in zip(fast[:4], slow[:4], column_arrays(evaluated, *SIGNAL_COLUMNS), strict=True):
            assert got.dtype == want.dtype == np.float64
            assert bits(got) == bits(want) == bits(expected)
        if len(frame):
            for side in (1, -1):
                assert outcome(analogs, frame, fast[4], side, 0.001, 5) == outcome(analogs, frame, slow[4], side, 0.001, 5)


def test_signal_columns_read_odd_arrays_as_the_frame_would() -> None:
    """Another length, a scalar or a float32 column goes through the frame (and fails or converts there);
    a bool direction reads as the frame would give it back, as floats."""
    import dataclasses

    from nodes.strategies import SignalArrays, frame_of, signal_columns
    from tools.indicators import column_arrays

    frame = enrich(candles(50, 21))
    strategy = registered_strategies()["ema_trend"]
    good = strategy.signals(frame)
    odd = (
        (good._replace(stop=good.stop[:-1]), pd.DataFrame),
        (good._replace(direction=np.int64(1)), pd.DataFrame),
        (good._replace(direction=good.direction.astype(bool)), SignalArrays),
        (good._replace(confidence=good.confidence.astype(np.float32)), pd.DataFrame),
    )
    for arrays, path in odd:
        broken = dataclasses.replace(strategy, signals=lambda _frame, arrays=arrays: arrays)
        got = outcome(signal_columns, broken, frame)
        want = outcome(lambda arrays=arrays: column_arrays(frame_of(arrays), *SIGNAL_COLUMNS))
        if isinstance(want, tuple) and isinstance(want[0], type):
            assert got == want
        else:
            assert [bits(g) for g in got[:4]] == [bits(w) for w in want] and isinstance(got[4], path)


def test_array_outcomes_refuse_what_trade_outcomes_refuses() -> None:
    from nodes.strategies import signal_columns

    frame = enrich(candles(100, 22))
    strategy = registered_strategies()["ema_trend"]
    arrays, signals = signal_columns(strategy, frame)[4], strategy.evaluate(frame)
    broken = frame.copy()
    broken.iloc[5, broken.columns.get_loc("close")] = np.nan
    shifted = frame.copy()
    shifted.index = shifted.index + pd.Timedelta(hours=1)
    unsorted = frame.iloc[::-1]
    for candles_ in (broken, shifted, unsorted, frame.iloc[:0]):
        assert outcome(analogs, candles_, arrays, 1, 0.001, 5) == outcome(analogs, candles_, signals, 1, 0.001, 5)


def test_rolling_matches_the_lag_by_lag_fold_and_pandas() -> None:
    from nodes.strategies import _rolling_by_lag, rolling, trailing_count

    rng = np.random.default_rng(5)
    negative_nan = -np.float64(np.nan) if np.signbit(-np.float64(np.nan)) else np.float64(np.nan)
    for case in range(1000):
        n, window = int(rng.integers(0, 70)), int(rng.integers(1, 35))
        min_periods = (None, 1, int(rng.integers(1, window + 1)))[case % 3]
        values = rng.integers(-5, 5, n).astype(float) if case % 2 else rng.normal(size=n)
        values[rng.random(n) < 0.3] = np.nan
        if case % 7 == 0:
            values[rng.random(n) < 0.2] = negative_nan
        if case % 5 == 0:
            values[rng.random(n) < 0.3] = -0.0
        elif case % 5 == 1:
            values[rng.random(n) < 0.3] = 0.0
        seen = np.concatenate(([0], np.cumsum(~np.isnan(values))))
        expected_count = seen[1:] - seen[np.maximum(np.arange(n) - window + 1, 0)]
        assert trailing_count(values, window).tolist() == expected_count.tolist()
        for reduce, name in ((np.fmax, "max"), (np.fmin, "min")):
            got = rolling(values, window, reduce, min_periods)
            assert bits(got) == bits(_rolling_by_lag(values, window, reduce, min_periods))
            by_pandas = getattr(pd.Series(values).rolling(window, min_periods=min_periods), name)().to_numpy()
            assert np.array_equal(got, by_pandas, equal_nan=True)


def test_trailing_rank_matches_a_rank_per_window() -> None:
    from nodes.strategies.breakout import WIDTH_WINDOW, trailing_rank

    rng = np.random.default_rng(6)
    for case in range(300):
        n = int(rng.integers(1, 260))
        values = rng.integers(0, 6, n).astype(float) if case % 2 else rng.normal(size=n)
        values[rng.random(n) < rng.uniform(0, 0.5)] = np.nan
        expected = np.full(n, np.nan)
        for i in range(n):
            window = values[max(0, i - WIDTH_WINDOW + 1) : i + 1]
            window = window[~np.isnan(window)]
            if not np.isnan(values[i]) and len(window) >= WIDTH_WINDOW // 2:
                expected[i] = (np.count_nonzero(window < values[i]) + 1) / len(window)
        assert bits(trailing_rank(values)) == bits(expected)


def test_recent_squeeze_is_the_rolling_maximum_of_the_flags() -> None:
    from nodes.strategies import rolling, shift
    from nodes.strategies.breakout import SQUEEZE_PCT, SQUEEZE_RECENT, recent_squeeze

    rng = np.random.default_rng(10)
    for _ in range(2000):
        rank = rng.choice([0.05, 0.2, 0.21, 0.9, np.nan], int(rng.integers(0, 40)), p=[0.1, 0.05, 0.1, 0.6, 0.15])
        expected = rolling(shift((rank <= SQUEEZE_PCT).astype(float), 1), SQUEEZE_RECENT, np.fmax, min_periods=1) > 0
        assert recent_squeeze(rank).tolist() == expected.tolist()


def test_supertrend_loop_matches_the_index_by_index_loop() -> None:
    import talib

    from nodes.strategies.supertrend_adx import LENGTH, MULTIPLIER, supertrend

    rng = np.random.default_rng(7)
    for case in range(300):
        frame = candles(int(rng.integers(LENGTH + 1, 200)), 1000 + case)
        if case % 3 == 0:
            frame = frame.round(0)
        high, low, close = (frame[c].to_numpy() for c in ("high", "low", "close"))
        atr = talib.ATR(high, low, close, LENGTH)
        lower, upper = (0.5 * (high + low) - MULTIPLIER * atr).tolist(), (0.5 * (high + low) + MULTIPLIER * atr).tolist()
        direction, line = [1] * len(close), [np.nan] * len(close)
        for i in range(1, len(close)):
            if close[i] > upper[i - 1]:
                direction[i] = 1
            elif close[i] < lower[i - 1]:
                direction[i] = -1
            else:
                direction[i] = direction[i - 1]
                if direction[i] > 0 and lower[i] < lower[i - 1]:
                    lower[i] = lower[i - 1]
                if direction[i] < 0 and upper[i] > upper[i - 1]:
                    upper[i] = upper[i - 1]
            line[i] = lower[i] if direction[i] > 0 else upper[i]
        trend = np.array(direction, dtype=float)
        trend[:LENGTH] = np.nan
        got_line, got_trend = supertrend(frame)
        assert bits(got_line) == bits(line) and bits(got_trend) == bits(trend)


def test_held_bars_count_each_run_candle_by_candle() -> None:
    from nodes.strategies.supertrend_adx import held_bars

    rng = np.random.default_rng(9)
    for _ in range(2000):
        trend = rng.choice([1.0, -1.0, np.nan, 0.0, -0.0, np.inf], int(rng.integers(0, 60)), p=[0.4, 0.4, 0.1, 0.04, 0.03, 0.03])
        expected, previous = [], None
        for i, side in enumerate(trend.tolist()):
            # NaN equals nothing, itself included: each undefined candle starts a run of its own
            same = previous is not None and side == previous
            expected.append(expected[-1] + 1 if same else 1)
            previous = side
        got = held_bars(trend)
        assert got.tolist() == expected and got.dtype == np.arange(1).dtype


def test_signal_habits_match_the_numpy_means() -> None:
    from nodes.strategy import FLIP_WINDOW, RECENT_CANDLES, signal_habits

    rng = np.random.default_rng(8)
    for case in range(2000):
        values = rng.choice([0.0, 0.0, 1.0, -1.0, np.nan] if case % 4 == 0 else [0.0, 1.0, -1.0], int(rng.integers(0, 120)))
        if len(values) == 0:
            assert np.isnan(signal_habits(values)[:2]).all() and signal_habits(values)[2] == 0
            continue
        onsets = (values != 0) & np.concatenate(([True], values[1:] != values[:-1]))
        recent = values[-FLIP_WINDOW:]
        sides = recent[recent != 0]
        expected = (float(onsets[-RECENT_CANDLES:].mean()), float(onsets.mean()), int((sides[1:] != sides[:-1]).sum()))
        got = signal_habits(values)
        assert got == expected and [type(v) for v in got] == [float, float, int]
