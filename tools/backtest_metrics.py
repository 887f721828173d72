"""Performance metrics of a :class:`tools.backtest.BacktestResult`.

Definitions (r = a trade's net return as a fraction, ``return_pct / 100``):

- win rate: share of trades with r > 0 (a break-even trade is not a win).
- average R: mean of the trades' R multiples (net P&L / initial risk to the stop).
- profit factor: sum of winning r / |sum of losing r|, on per-trade returns (not on
  compounded money). No losing trade: ``inf`` when there is a win, ``None`` when there
  is nothing at all (no trades, or only break-evens); no winning trade: 0.0. JSON
  carries ``inf`` as the string "Infinity", which validates back to ``inf``.
- Sharpe: mean(r) / sample std(r) (ddof=1), risk-free rate 0. Sortino: mean(r) /
  downside deviation, sqrt(mean(min(r, 0)^2)) over ALL trades (target return 0).
  Both are per trade; ``None`` with fewer than 2 trades or a zero denominator.
  The annualised versions multiply by sqrt(trades per year), trades per year being
  trades / (span in days / 365.25): the span of the data or window they come from,
  in calendar days since crypto trades every day.
- max drawdown: largest peak-to-trough fall of the compounded equity curve, in percent,
  the start (1.0) counting as a peak. Equity is sampled at trade exits only, so a dip
  inside a trade that recovers before its exit is not seen.
- Trades marked at the end of data (``is_open``) count, at their liquidation mark, so
  the metrics agree with the equity curve; ``evaluate(include_open=False)`` drops them.

Walk-forward: the span [start, end] is cut into ``n_folds + 1`` equal time segments.
Fold f (1..n) is tested out of sample on segment f and in sample on segment f-1
(rolling) or on segments 0..f-1 (anchored). A trade belongs to the segment holding
its entry time. OOS windows are half-open, disjoint, and together cover everything
after segment 0. The strategies have no fitted parameters, so nothing is refitted:
the one continuous backtest is partitioned, in-sample metrics are there to compare,
and out-of-sample metrics are what count.

Monte Carlo: the trades' returns are reshuffled ``runs`` times (numpy Generator with a
fixed seed); each order gives a compounded curve and its max drawdown. The final
equity is the same for every order; the path, and so the drawdown, is what changes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from tools.backtest import BacktestResult, Trade

DAYS_PER_YEAR = 365.25
_MC_CELLS = 4_000_000  # returns reshuffled per numpy call: bounds memory at ~32 MB


class Metrics(BaseModel):
    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    trades: int
    win_rate: float | None
    average_r: float | None
    average_return_pct: float | None
    total_return_pct: float  # compounded
    profit_factor: float | None
    sharpe: float | None  # per trade
    sortino: float | None  # per trade
    trades_per_year: float | None
    sharpe_annualised: float | None
    sortino_annualised: float | None
    max_drawdown_pct: float


class Fold(BaseModel):
    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    fold: int
    in_sample_start: datetime
    in_sample_end: datetime  # exclusive
    out_of_sample_start: datetime
    out_of_sample_end: datetime  # exclusive, except the last fold's, which holds the last candle
    in_sample: Metrics
    out_of_sample: Metrics


class WalkForward(BaseModel):
    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    scheme: Literal["rolling", "anchored"]
    folds: list[Fold]
    out_of_sample: Metrics  # every fold's OOS trades together


class MonteCarloDrawdown(BaseModel):
    model_config = ConfigDict(frozen=True)

    runs: int
    seed: int
    trades: int
    original_pct: float  # the max drawdown of the actual trade order
    original_rank: float  # share of reshuffled orders whose drawdown is <= the original's
    p5_pct: float
    p50_pct: float
    p95_pct: float
    min_pct: float
    max_pct: float


class BacktestReport(BaseModel):
    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    overall: Metrics
    by_regime: dict[str, Metrics]  # by regime at entry; "unknown" when none was given
    walk_forward: WalkForward
    monte_carlo: MonteCarloDrawdown


def _drawdowns_pct(returns: np.ndarray) -> np.ndarray:
    """Max drawdown (percent) of each row of per-trade returns, compounded from 1.0."""
    equity = np.cumprod(1 + returns, axis=-1)
    # The starting capital is the first peak: a first losing trade is already a drawdown.
    peak = np.maximum(np.maximum.accumulate(equity, axis=-1), 1.0)
    if equity.shape[-1] == 0:
        return np.zeros(equity.shape[:-1])
    return (1 - equity / peak).max(axis=-1) * 100


def max_drawdown_pct(equity: Sequence[float] | np.ndarray) -> float:
    """Peak-to-trough fall of an equity curve, in percent (0 when it never falls)."""
    curve = np.asarray(equity, dtype=np.float64)
    if curve.size == 0:
        return 0.0
    return float((1 - curve / np.maximum.accumulate(curve)).max() * 100)


def compute_metrics(returns_pct: Sequence[float], r_multiples: Sequence[float], span_days: float) -> Metrics:
    """Metrics of trades given as net returns in percent, their R multiples, over ``span_days`` of data."""
    r = np.asarray(returns_pct, dtype=np.float64) / 100
    n = int(r.size)
    wins, losses = float(r[r > 0].sum()), float(-r[r < 0].sum())
    if losses > 0:
        profit_factor: float | None = wins / losses
    else:
        profit_factor = math.inf if wins > 0 else None
    sharpe = sortino = None
    if n >= 2:
        std = float(r.std(ddof=1))
        downside = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2)))
        sharpe = float(r.mean()) / std if std > 0 else None
        sortino = float(r.mean()) / downside if downside > 0 else None
    per_year = n / (span_days / DAYS_PER_YEAR) if span_days > 0 else None
    scale = math.sqrt(per_year) if per_year else None
    return Metrics(
        trades=n,
        win_rate=float((r > 0).mean()) if n else None,
        average_r=float(np.mean(r_multiples)) if n else None,
        average_return_pct=float(r.mean() * 100) if n else None,
        total_return_pct=float((np.prod(1 + r) - 1) * 100),
        profit_factor=profit_factor,
        sharpe=sharpe,
        sortino=sortino,
        trades_per_year=per_year,
        sharpe_annualised=sharpe * scale if sharpe is not None and scale else None,
        sortino_annualised=sortino * scale if sortino is not None and scale else None,
        max_drawdown_pct=float(_drawdowns_pct(r)),
    )


def trade_metrics(trades: Sequence[Trade], span_days: float) -> Metrics:
    return compute_metrics([t.return_pct for t in trades], [t.r_multiple for t in trades], span_days)


def _days(start: datetime, end: datetime) -> float:
    return (end - start) / timedelta(days=1)


def _kept(result: BacktestResult, include_open: bool) -> list[Trade]:
    return [t for t in result.trades if include_open or not t.is_open]


def by_regime(result: BacktestResult, *, include_open: bool = True) -> dict[str, Metrics]:
    """The metrics of each regime's trades, annualised over the whole span (regimes recur across it)."""
    groups: dict[str, list[Trade]] = {}
    for trade in _kept(result, include_open):
        groups.setdefault(trade.regime or "unknown", []).append(trade)
    span = _days(result.start, result.end)
    return {regime: trade_metrics(trades, span) for regime, trades in sorted(groups.items())}


def walk_forward(
    result: BacktestResult, *, n_folds: int = 5, anchored: bool = False, include_open: bool = True
) -> WalkForward:
    """Fold-by-fold in-sample and out-of-sample metrics; the scheme is in the module docstring."""
    if n_folds < 1:
        raise ValueError("n_folds must be at least 1")
    step = (result.end - result.start) / (n_folds + 1)
    bounds = [result.start + step * k for k in range(n_folds + 1)] + [result.end]
    trades = _kept(result, include_open)

    def inside(lo: datetime, hi: datetime, last: bool) -> list[Trade]:
        return [t for t in trades if lo <= t.entry_time and (t.entry_time < hi or (last and t.entry_time == hi))]

    folds = []
    for f in range(1, n_folds + 1):
        is_lo, is_hi, oos_lo, oos_hi = bounds[0 if anchored else f - 1], bounds[f], bounds[f], bounds[f + 1]
        last = f == n_folds
        folds.append(
            Fold(
                fold=f,
                in_sample_start=is_lo,
                in_sample_end=is_hi,
                out_of_sample_start=oos_lo,
                out_of_sample_end=oos_hi,
                in_sample=trade_metrics(inside(is_lo, is_hi, False), _days(is_lo, is_hi)),
                out_of_sample=trade_metrics(inside(oos_lo, oos_hi, last), _days(oos_lo, oos_hi)),
            )
        )
    pooled = inside(bounds[1], bounds[-1], True)
    return WalkForward(
        scheme="anchored" if anchored else "rolling",
        folds=folds,
        out_of_sample=trade_metrics(pooled, _days(bounds[1], bounds[-1])),
    )


def monte_carlo_drawdown(returns_pct: Sequence[float], *, runs: int = 1000, seed: int = 0) -> MonteCarloDrawdown:
    """Percentiles of max drawdown over ``runs`` random orders of the same trades."""
    if runs < 1:
        raise ValueError("runs must be at least 1")
    r = np.asarray(returns_pct, dtype=np.float64) / 100
    rng = np.random.default_rng(seed)
    # Rows are shuffled in fixed-size batches, so the draws depend only on (seed, runs, trades).
    batch = max(1, _MC_CELLS // max(r.size, 1))
    simulated = np.concatenate(
        [
            _drawdowns_pct(rng.permuted(np.tile(r, (min(batch, runs - done), 1)), axis=1))
            for done in range(0, runs, batch)
        ]
    )
    original = float(_drawdowns_pct(r))
    p5, p50, p95 = (float(v) for v in np.percentile(simulated, [5, 50, 95]))
    return MonteCarloDrawdown(
        runs=runs,
        seed=seed,
        trades=int(r.size),
        original_pct=original,
        # A tolerance, so an order that reproduces the original's drawdown (up to rounding) counts as <=.
        original_rank=float(np.mean(simulated <= original + 1e-9)),
        p5_pct=p5,
        p50_pct=p50,
        p95_pct=p95,
        min_pct=float(simulated.min()),
        max_pct=float(simulated.max()),
    )


def evaluate(
    result: BacktestResult,
    *,
    n_folds: int = 5,
    anchored: bool = False,
    runs: int = 1000,
    seed: int = 0,
    include_open: bool = True,
) -> BacktestReport:
    """Everything above for one backtest, as one persistable model."""
    trades = _kept(result, include_open)
    return BacktestReport(
        overall=trade_metrics(trades, _days(result.start, result.end)),
        by_regime=by_regime(result, include_open=include_open),
        walk_forward=walk_forward(result, n_folds=n_folds, anchored=anchored, include_open=include_open),
        monte_carlo=monte_carlo_drawdown([t.return_pct for t in trades], runs=runs, seed=seed),
    )
