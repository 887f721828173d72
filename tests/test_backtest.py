"""Backtest engine and metrics: hand-built cases, an independent reference simulator, no look-ahead."""

from __future__ import annotations

import itertools
import math
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from tools.backtest import BacktestResult, Trade, run_backtest
from tools.backtest_metrics import (
    BacktestReport,
    compute_metrics,
    evaluate,
    max_drawdown_pct,
    monte_carlo_drawdown,
    trade_metrics,
    walk_forward,
)

FEE, BPS = 0.001, 5
S = BPS / 1e4
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def make_candles(rows: list[tuple[float, float, float, float]]) -> pd.DataFrame:
    index = pd.date_range(T0, periods=len(rows), freq="1h", tz="UTC")
    frame = pd.DataFrame(rows, columns=["open", "high", "low", "close"], index=index)
    frame["volume"] = 1.0
    return frame


def make_signals(candles: pd.DataFrame, at: dict[int, tuple[int, float, float]]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"direction": 0, "confidence": 0.0, "stop": np.nan, "target": np.nan}, index=candles.index
    )
    for bar, (direction, stop, target) in at.items():
        frame.iloc[bar] = [direction, 0.5, stop, target]
    return frame


FLAT = (100.0, 101.0, 99.0, 100.0)


def run(rows, at, **kwargs) -> BacktestResult:
    candles = make_candles(rows)
    return run_backtest(candles, make_signals(candles, at), **{"fee_rate": FEE, "slippage_bps": BPS, **kwargs})


# ---------- engine, hand-built candles ----------


def test_long_enters_next_open_with_slippage_and_exits_at_target() -> None:
    # The signal candle closes at 99.5 and the next opens at 100: the entry must use the open.
    rows = [(100, 101, 99, 99.5), (100, 102, 98, 101), (101, 105, 100, 104), (104, 111, 103, 109), (109, 110, 108, 109)]
    result = run(rows, {0: (1, 95.0, 110.0)})
    (trade,) = result.trades
    entry, exit_ = 100 * 1.0005, 110 * 0.9995  # buy 5 bps above the open, sell 5 bps below the target
    assert (trade.signal_bar, trade.entry_bar, trade.exit_bar) == (0, 1, 3)
    assert trade.entry_time == T0 + timedelta(hours=1) and trade.exit_time == T0 + timedelta(hours=3)
    assert trade.exit_reason == "target" and not trade.is_open and trade.side == 1
    assert trade.entry_price == pytest.approx(entry) and trade.exit_price == pytest.approx(exit_)
    expected = (exit_ / entry - 1) - FEE * (1 + exit_ / entry)  # fee on entry notional 1 and exit notional
    assert trade.return_pct == pytest.approx(expected * 100)
    assert trade.fees_pct == pytest.approx(FEE * (1 + exit_ / entry) * 100)
    assert trade.r_multiple == pytest.approx(((exit_ - entry) - FEE * (entry + exit_)) / (entry - 95.0))
    assert [p.equity for p in result.equity] == pytest.approx([1.0, 1 + expected])


def test_short_stopped_out() -> None:
    rows = [FLAT, (100, 101, 98, 99), (99, 106, 98, 104), (104, 105, 103, 104)]
    (trade,) = run(rows, {0: (-1, 105.0, 90.0)}).trades
    entry, exit_ = 100 * 0.9995, 105 * 1.0005  # sell short below the open, buy back above the stop
    assert (trade.side, trade.exit_reason, trade.exit_bar) == (-1, "stop", 2)
    assert trade.entry_price == pytest.approx(entry) and trade.exit_price == pytest.approx(exit_)
    assert trade.return_pct == pytest.approx((-(exit_ / entry - 1) - FEE * (1 + exit_ / entry)) * 100)
    assert trade.r_multiple == pytest.approx((-(exit_ - entry) - FEE * (entry + exit_)) / (105.0 - entry))
    assert trade.r_multiple < -1  # slippage and fees make a full stop cost more than 1R


def test_stop_and_target_in_one_candle_assumes_stop() -> None:
    rows = [FLAT, (100, 102, 98, 101), (100, 111, 94, 100), FLAT]
    (trade,) = run(rows, {0: (1, 95.0, 110.0)}).trades
    assert (trade.exit_reason, trade.exit_bar) == ("stop", 2)
    assert trade.exit_price == pytest.approx(95 * 0.9995)


def test_entry_candle_itself_can_stop_out() -> None:
    (trade,) = run([FLAT, (100, 101, 94, 96), FLAT], {0: (1, 95.0, 110.0)}).trades
    assert (trade.entry_bar, trade.exit_bar, trade.exit_reason) == (1, 1, "stop")


def test_gaps_fill_at_the_open() -> None:
    (stopped,) = run([FLAT, (100, 101, 99, 100), (93, 94, 92, 93)], {0: (1, 95.0, 110.0)}).trades
    assert stopped.exit_reason == "stop" and stopped.exit_price == pytest.approx(93 * 0.9995)  # worse than 95
    # A gap over the target fills at the open, which is known to come first, even if the candle later hits the stop.
    (won,) = run([FLAT, (100, 101, 99, 100), (112, 113, 90, 95)], {0: (1, 95.0, 110.0)}).trades
    assert won.exit_reason == "target" and won.exit_price == pytest.approx(112 * 0.9995)


def test_opposite_signal_exits_next_open_and_reverses() -> None:
    rows = [FLAT, (100, 102, 99, 101), (101, 103, 100, 102), (102, 104, 101, 103), *[(103, 104, 102, 103)] * 2]
    long, short = run(rows, {0: (1, 90.0, 120.0), 2: (-1, 110.0, 80.0)}).trades
    assert (long.exit_reason, long.exit_bar) == ("signal", 3)
    assert long.exit_price == pytest.approx(102 * 0.9995)
    assert (short.side, short.signal_bar, short.entry_bar) == (-1, 2, 3)
    assert short.entry_price == pytest.approx(102 * 0.9995)
    # Still open at the end: marked at the last close as a liquidation (slippage and fee), flagged open.
    assert (short.exit_reason, short.is_open, short.exit_bar) == ("end_of_data", True, 5)
    assert short.exit_price == pytest.approx(103 * 1.0005)


def test_touch_on_the_opposite_signal_candle_comes_first() -> None:
    rows = [FLAT, (100, 102, 99, 101), (101, 102, 94, 96), (96, 97, 95, 96), FLAT]
    long, short = run(rows, {0: (1, 95.0, 120.0), 2: (-1, 100.0, 80.0)}).trades
    assert (long.exit_reason, long.exit_bar) == ("stop", 2)  # stopped during candle 2, before its close
    assert (short.signal_bar, short.entry_bar, short.entry_price) == (2, 3, pytest.approx(96 * 0.9995))


def test_one_position_at_a_time_and_reentry_after_exit() -> None:
    rows = [FLAT, (100, 102, 99, 101), (101, 103, 100, 102), (102, 111, 101, 108), (108, 109, 107, 108), FLAT]
    at = {0: (1, 95.0, 110.0), 1: (1, 96.0, 112.0), 2: (1, 97.0, 114.0), 3: (1, 100.0, 120.0)}
    first, second = run(rows, at).trades
    assert (first.signal_bar, first.exit_bar, first.exit_reason) == (0, 3, "target")
    # Signals 1 and 2 came while in the trade; signal 3 is known at the close of the exit candle.
    assert (second.signal_bar, second.entry_bar, second.stop) == (3, 4, 100.0)


def test_signals_that_cannot_be_entered_are_skipped() -> None:
    rows = [FLAT, (98, 99, 97, 98), (102, 103, 101, 102), FLAT, FLAT, FLAT, FLAT]
    at = {
        0: (1, 99.0, 110.0),  # next open 98 is already below the stop
        1: (1, 95.0, 101.0),  # next open 102 is already past the target
        3: (1, np.nan, 110.0),  # no stop: refuse, fail closed
        4: (-1, 105.0, np.nan),  # valid; a NaN target means none
        6: (1, 95.0, 110.0),  # last candle: there is no next open
    }
    (trade,) = run(rows, at).trades
    assert (trade.signal_bar, trade.target, trade.exit_reason) == (4, None, "end_of_data")


def test_fees_are_charged_on_both_sides() -> None:
    rows = [FLAT, (100, 101, 99, 100), (100, 111, 99, 110)]
    free = run(rows, {0: (1, 95.0, 110.0)}, fee_rate=0.0, slippage_bps=0).trades[0]
    paid = run(rows, {0: (1, 95.0, 110.0)}, fee_rate=0.001, slippage_bps=0).trades[0]
    assert free.return_pct == pytest.approx(10.0) and free.fees_pct == 0
    assert paid.fees_pct == pytest.approx(0.1 + 0.11)  # 0.1 % of 1 in, 0.1 % of 1.1 out
    assert paid.return_pct == pytest.approx(10.0 - 0.21)


def test_regime_is_the_signal_candles() -> None:
    candles = make_candles([FLAT, (100, 101, 99, 100), FLAT])
    regimes = pd.Series(["RANGING", "VOLATILE", "VOLATILE"], index=candles.index)
    result = run_backtest(candles, make_signals(candles, {0: (1, 95.0, 110.0)}), regimes=regimes)
    assert result.trades[0].regime == "RANGING"


def test_no_signals_no_trades_and_inputs_are_checked() -> None:
    candles = make_candles([FLAT] * 4)
    result = run_backtest(candles, make_signals(candles, {}))
    assert result.trades == [] and [p.equity for p in result.equity] == [1.0]
    with pytest.raises(ValueError, match="index"):
        run_backtest(candles, make_signals(candles, {}).shift(1, freq="1h"))
    broken = candles.copy()
    broken.iloc[2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        run_backtest(broken, make_signals(candles, {}))


# ---------- engine vs an independent bar-by-bar reference ----------


def random_market(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    gap = np.where(rng.random(n) < 0.05, rng.normal(0, 0.02, n), 0)  # occasional gaps at the open
    open_ = np.r_[100.0, close[:-1]] * np.exp(gap)
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.005, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.005, n)))
    candles = make_candles(list(zip(open_, high, low, close, strict=True)))
    direction = rng.choice([-1, 0, 0, 0, 1], n)
    width = close * rng.uniform(0.005, 0.04, n)
    stop = np.where(rng.random(n) < 0.05, np.nan, close - direction * width)
    target = np.where(rng.random(n) < 0.1, np.nan, close + direction * width * rng.uniform(0.5, 3, n))
    signals = pd.DataFrame(
        {"direction": direction, "confidence": 0.5, "stop": stop, "target": target}, index=candles.index
    )
    return candles, signals


def reference(candles: pd.DataFrame, signals: pd.DataFrame) -> list[tuple]:
    """The documented rules, walked candle by candle with no cleverness."""
    o, h, lo, c = (candles[k].to_numpy() for k in ("open", "high", "low", "close"))
    d, st, tg = (signals[k].to_numpy() for k in ("direction", "stop", "target"))
    n, out, pos = len(o), [], None
    for t in range(n):
        if pos is not None:  # inside candle t
            i, side, entry = pos
            if side > 0:
                hit = ("target", o[t]) if o[t] >= tg[i] else ("stop", min(o[t], st[i])) if lo[t] <= st[i] else (
                    ("target", tg[i]) if h[t] >= tg[i] else None)  # fmt: skip
            else:
                hit = ("target", o[t]) if o[t] <= tg[i] else ("stop", max(o[t], st[i])) if h[t] >= st[i] else (
                    ("target", tg[i]) if lo[t] <= tg[i] else None)  # fmt: skip
            if hit:
                out.append((i, i + 1, t, side, hit[0], entry, hit[1] * (1 - side * S)))
                pos = None
        if d[t] == 0:  # at the close of candle t
            continue
        if pos is not None and d[t] == -pos[1] and t + 1 < n:
            out.append((pos[0], pos[0] + 1, t + 1, pos[1], "signal", pos[2], o[t + 1] * (1 - pos[1] * S)))
            pos = None
        if pos is None and t + 1 < n:
            entry = o[t + 1] * (1 + d[t] * S)
            ok_target = math.isnan(tg[t]) or d[t] * (tg[t] - entry) > 0
            if not math.isnan(st[t]) and d[t] * (entry - st[t]) > 0 and ok_target:
                pos = (t, int(d[t]), entry)
    if pos is not None:
        out.append((pos[0], pos[0] + 1, n - 1, pos[1], "end_of_data", pos[2], c[-1] * (1 - pos[1] * S)))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_engine_matches_reference_simulator(seed: int) -> None:
    candles, signals = random_market(3000, seed)
    got = run_backtest(candles, signals, fee_rate=FEE, slippage_bps=BPS).trades
    want = reference(candles, signals)
    assert len(got) > 100  # the random signals do trade
    assert {t.exit_reason for t in got} == {"stop", "target", "signal"} | ({"end_of_data"} & {w[4] for w in want})
    assert [(t.signal_bar, t.entry_bar, t.exit_bar, t.side, t.exit_reason) for t in got] == [w[:5] for w in want]
    assert [t.entry_price for t in got] == pytest.approx([w[5] for w in want])
    assert [t.exit_price for t in got] == pytest.approx([w[6] for w in want])


def test_no_look_ahead() -> None:
    candles, signals = random_market(3000, 7)
    full = run_backtest(candles, signals).trades
    rng = np.random.default_rng(99)
    for cut in (500, 1234, 2999):
        closed = [t for t in full if t.exit_bar < cut]
        truncated = run_backtest(candles.iloc[:cut], signals.iloc[:cut]).trades
        assert [t for t in truncated if not t.is_open] == closed
        # Rewrite everything from `cut` on: prices, signals, all of it.
        noisy_candles, noisy_signals = candles.copy(), signals.copy()
        noisy_candles.iloc[cut:, :4] = np.sort(rng.uniform(50, 150, (len(candles) - cut, 4)), axis=1)[:, [1, 3, 0, 2]]
        noisy_signals.iloc[cut:, 0] = rng.choice([-1, 0, 1], len(candles) - cut)
        assert [t for t in run_backtest(noisy_candles, noisy_signals).trades if t.exit_bar < cut] == closed


def test_real_strategy_invariants_report_and_speed() -> None:
    from nodes.strategies.ema_trend import evaluate as ema_trend
    from tools.indicators import enrich

    candles, _ = random_market(5000, 11)
    frame = enrich(candles)
    regimes = pd.Series(np.where(frame["adx"] >= 20, "TRENDING", "RANGING"), index=candles.index)
    result = run_backtest(candles, ema_trend(frame), regimes=regimes)
    trades = result.trades
    assert trades
    assert all(a.exit_bar <= b.entry_bar for a, b in itertools.pairwise(trades))  # never two at once
    assert all(t.entry_bar == t.signal_bar + 1 for t in trades)
    report = evaluate(result, runs=200)
    assert BacktestReport.model_validate_json(report.model_dump_json()) == report
    assert set(report.by_regime) <= {"TRENDING", "RANGING"}
    assert sum(m.trades for m in report.by_regime.values()) == report.overall.trades == len(trades)
    assert result.equity[-1].equity == pytest.approx(1 + report.overall.total_return_pct / 100)
    # The no-trade path must clear 1e6 candles/s with a wide margin (measured ~1e8 on a 2-core box).
    big = pd.concat([candles] * 40)
    big.index = pd.date_range(T0, periods=len(big), freq="1min", tz="UTC")
    zero = pd.DataFrame({"direction": 0, "stop": np.nan, "target": np.nan}, index=big.index)
    started = time.perf_counter()
    run_backtest(big, zero)
    assert len(big) / (time.perf_counter() - started) > 1e6


# ---------- metrics ----------

RETURNS = [10.0, -5.0, 20.0, -10.0, 5.0]
RS = [2.0, -1.0, 4.0, -2.0, 1.0]


def test_metrics_by_hand() -> None:
    m = compute_metrics(RETURNS, RS, span_days=365.25)  # one year: 5 trades per year
    assert m.trades == 5 and m.win_rate == pytest.approx(3 / 5) and m.average_r == pytest.approx(0.8)
    assert m.profit_factor == pytest.approx((0.10 + 0.20 + 0.05) / (0.05 + 0.10))
    # equity 1.1, 1.045, 1.254, 1.1286, 1.18503: worst fall is 1.254 -> 1.1286
    assert m.max_drawdown_pct == pytest.approx((1 - 1.1286 / 1.254) * 100) and m.max_drawdown_pct == pytest.approx(10)
    assert m.total_return_pct == pytest.approx(18.503)
    # mean 0.04; deviations .06 -.09 .16 -.14 .01 -> squares sum .057 -> sample var .057/4
    assert m.sharpe == pytest.approx(0.04 / math.sqrt(0.057 / 4))
    # downside: (.05^2 + .10^2) / 5 trades = .0025 -> deviation .05
    assert m.sortino == pytest.approx(0.04 / 0.05)
    assert m.trades_per_year == pytest.approx(5)
    assert m.sharpe_annualised == pytest.approx(m.sharpe * math.sqrt(5))
    assert m.sortino_annualised == pytest.approx(0.8 * math.sqrt(5))


def test_metrics_edge_cases() -> None:
    assert compute_metrics([], [], 10).model_dump(include={"trades", "win_rate", "profit_factor", "sharpe"}) == {
        "trades": 0, "win_rate": None, "profit_factor": None, "sharpe": None,
    }  # fmt: skip
    winners = compute_metrics([1.0, 2.0], [0.5, 1.0], 10)
    assert winners.profit_factor == math.inf and winners.sortino is None and winners.max_drawdown_pct == 0
    assert type(winners).model_validate_json(winners.model_dump_json()).profit_factor == math.inf
    losers = compute_metrics([-1.0, -2.0], [-0.5, -1.0], 10)
    assert losers.profit_factor == 0.0 and losers.win_rate == 0.0
    assert losers.max_drawdown_pct == pytest.approx((1 - 0.99 * 0.98) * 100)  # the start is the first peak
    assert compute_metrics([3.0], [1.0], 10).sharpe is None  # one trade is not a distribution
    assert compute_metrics([1.0, -1.0], [1, -1], 0).sharpe_annualised is None  # no span: no annualising
    assert max_drawdown_pct([1.0, 1.2, 0.9, 1.5, 1.2]) == pytest.approx(25)


def fake_trade(day: float, return_pct: float, regime: str | None = None) -> Trade:
    at = T0 + timedelta(days=day)
    return Trade(
        side=1, signal_time=at, entry_time=at, entry_price=100, exit_time=at, exit_price=100, stop=90, target=None,
        exit_reason="stop", is_open=False, return_pct=return_pct, r_multiple=return_pct / 10, fees_pct=0.2,
        confidence=0.5, regime=regime, signal_bar=0, entry_bar=0, exit_bar=0,
    )  # fmt: skip


def fake_result(trades: list[Trade], days: float = 60) -> BacktestResult:
    return BacktestResult(
        start=T0, end=T0 + timedelta(days=days), candles=int(days * 24), fee_rate=FEE, slippage_bps=BPS,
        trades=trades, equity=[],
    )  # fmt: skip


def test_trade_metrics_and_regimes_use_the_trades() -> None:
    trades = [fake_trade(i, r, "UP" if i % 2 else "DOWN") for i, r in enumerate(RETURNS)]
    assert trade_metrics(trades, 365.25) == compute_metrics(RETURNS, [r / 10 for r in RETURNS], 365.25)
    report = evaluate(fake_result(trades), runs=50)
    assert report.by_regime["DOWN"].trades == 3 and report.by_regime["UP"].trades == 2
    assert report.by_regime["UP"].win_rate == 0.0  # -5 and -10


def test_walk_forward_folds_tile_the_data() -> None:
    # 60 days, 5 folds -> 6 segments of 10 days; one trade per day.
    trades = [fake_trade(d + 0.5, 1.0 if d % 3 else -1.0) for d in range(60)]
    result = fake_result(trades)
    wf = walk_forward(result, n_folds=5)
    starts = [f.out_of_sample_start for f in wf.folds]
    ends = [f.out_of_sample_end for f in wf.folds]
    assert starts[0] == T0 + timedelta(days=10) and ends[-1] == result.end
    assert starts[1:] == ends[:-1]  # contiguous, so disjoint half-open windows with no gap
    assert all(f.out_of_sample.trades == 10 and f.in_sample.trades == 10 for f in wf.folds)
    assert all(f.in_sample_end == f.out_of_sample_start for f in wf.folds)
    assert wf.out_of_sample.trades == 50 == sum(f.out_of_sample.trades for f in wf.folds)
    anchored = walk_forward(result, n_folds=5, anchored=True)
    assert [f.in_sample.trades for f in anchored.folds] == [10, 20, 30, 40, 50]
    assert all(f.in_sample_start == T0 for f in anchored.folds)
    # A trade exactly on a boundary belongs to the later window, and the very last candle to the last fold.
    edge = walk_forward(fake_result([fake_trade(20, 1.0), fake_trade(60, 1.0)]), n_folds=5)
    assert [f.out_of_sample.trades for f in edge.folds] == [0, 1, 0, 0, 1]


def test_monte_carlo_by_hand_and_deterministic() -> None:
    # Orders of (-10, -10, +50): LLW and WLL fall 19 %, LWL only 10 %; each order equally likely.
    mc = monte_carlo_drawdown([-10.0, -10.0, 50.0], runs=3000, seed=1)
    assert (mc.min_pct, mc.p5_pct) == pytest.approx((10, 10)) and (mc.p50_pct, mc.max_pct) == pytest.approx((19, 19))
    assert mc.original_pct == pytest.approx(19)

    returns = list(np.random.default_rng(5).normal(0.3, 3, 80))
    first, again = monte_carlo_drawdown(returns, runs=2000, seed=42), monte_carlo_drawdown(returns, runs=2000, seed=42)
    assert first == again
    assert monte_carlo_drawdown(returns, runs=2000, seed=43) != first
    assert first.min_pct <= first.p5_pct <= first.p50_pct <= first.p95_pct <= first.max_pct
    assert first.min_pct <= first.original_pct <= first.max_pct
    assert first.original_pct == pytest.approx(compute_metrics(returns, returns, 1).max_drawdown_pct)
