"""Backtest throughput over a year of 5m candles (105,120) from the built-in source.

Times each stage separately, in candles per second: `enrich` (shared by every
strategy), the strategies' `evaluate`, and `run_backtest`, for one strategy and
for the ensemble (every live strategy evaluated, then combined as
`aitrader backtest` does). Run: `.venv/bin/python -m bench.backtest_speed [strategy]`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from api.backtest_cli import ensemble_signals, regime_labels, select_strategies
from tools.backtest import run_backtest
from tools.indicators import enrich
from tools.market_data.builtin import BuiltinSource

CANDLES = 365 * 288  # 105,120 five-minute candles
UNTIL = datetime(2026, 11, 20, tzinfo=UTC)


def timed[T](action: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    value = action()
    return value, time.perf_counter() - start


def main(name: str = "ema_trend") -> None:
    candles, load_s = timed(lambda: BuiltinSource(None).candles("BTC/USDT", "5m", until=UNTIL, limit=CANDLES))
    n = len(candles)
    frame, enrich_s = timed(lambda: enrich(candles))
    regimes = regime_labels(frame)
    one = select_strategies(name)[0]
    every = select_strategies(None)

    signals, one_eval_s = timed(lambda: one.evaluate(frame))
    result, one_bt_s = timed(lambda: run_backtest(candles, signals, regimes=regimes))
    evaluated = [(s.name, *timed(lambda s=s: s.evaluate(frame))) for s in every]
    frames, all_eval_s = [f for _, f, _ in evaluated], sum(t for _, _, t in evaluated)
    combined, combine_s = timed(lambda: ensemble_signals(frames))
    ensemble, ens_bt_s = timed(lambda: run_backtest(candles, combined, regimes=regimes))

    rows = [
        ("built-in candles (load)", load_s, None),
        ("enrich (once per symbol)", enrich_s, None),
        (f"{one.name}: evaluate", one_eval_s, None),
        (f"{one.name}: run_backtest", one_bt_s, len(result.trades)),
        (f"{one.name}: enrich+evaluate+backtest", enrich_s + one_eval_s + one_bt_s, None),
        *((f"  evaluate {label}", seconds, None) for label, _, seconds in evaluated),
        (f"ensemble: evaluate {len(every)} strategies", all_eval_s, None),
        ("ensemble: combine signals", combine_s, None),
        ("ensemble: run_backtest", ens_bt_s, len(ensemble.trades)),
        ("ensemble: enrich+evaluate+combine+backtest", enrich_s + all_eval_s + combine_s + ens_bt_s, None),
    ]
    print(f"{n:,} x 5m BTC/USDT candles (built-in, natural market)")
    print(f"{'stage':<44} {'seconds':>8} {'candles/s':>12} {'trades':>7}")
    for label, seconds, trades in rows:
        print(f"{label:<44} {seconds:>8.3f} {n / seconds:>12,.0f} {'' if trades is None else trades:>7}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
