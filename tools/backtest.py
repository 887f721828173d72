"""Look-ahead-free backtest of one strategy's signal frame over a candle frame.

Conventions (every number below follows from these; tests pin each one):

- Timing. A candle is labelled by its open time. A signal on candle t is known
  only at t's close, so it is acted on at the OPEN of candle t+1. A signal on
  the last candle is never entered (there is no next open).
- Fills. Every fill (entry and every kind of exit) is moved ``slippage_bps``
  against the trader: a buy at ``p * (1 + s)``, a sell at ``p * (1 - s)``.
  A fee of ``fee_rate`` is charged on the notional of each side.
- Entry validity. The position carries the signal's stop and target. A signal
  whose stop is not finite, whose stop is already breached by the entry fill,
  or whose target is already reached by it, is skipped: its premise no longer
  holds when the order could be placed. A NaN target means "no target".
- Exits, first that applies wins:
  1. the stop or target is touched by a candle's range, from the entry candle
     on. If the candle OPENS beyond a level (a gap), the fill is that open,
     since the open is known to be the candle's first price. Otherwise, if the
     range touches both levels, the stop is assumed (order inside a candle is
     unknown; assume the worse). Stop and target fill at the level itself.
  2. an opposite signal on candle m exits at the open of m+1 (a touch during
     candle m itself came first and wins). That opposite signal then opens a
     new position at the same open, if it is a valid entry (stop and reverse).
  3. end of data: a position still open after the last candle is marked at the
     last close, with slippage and the exit fee, as if liquidated there, and
     flagged ``is_open`` so a report can leave it out.
- One position at a time. Same-direction signals during a trade are ignored. A
  signal on the candle of a stop/target exit can enter at the next open: it is
  known at that candle's close, after the intra-candle exit.
- Sizing. Each trade puts the whole capital in (1 unit of notional, no
  leverage); ``return_pct`` is net of fees, per unit of capital, and the equity
  curve compounds those returns trade after trade, starting at 1.0. It is not
  risk-based sizing: ``r_multiple`` (net P&L / distance from entry fill to stop)
  is reported separately so risk-based results can be derived.
- Regime at entry is the regime label of the SIGNAL candle: the regime known
  when the decision was made (the entry candle's regime needs its close).

The simulation itself (and its speed notes) is in :mod:`tools.backtest_sim`; this module checks the
frames and turns the simulated rows into trades, returns and an equity curve.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, TypeAdapter

from tools.backtest_sim import CANDLE_COLUMNS, ExitReason, Simulated, candle_prices, simulate, trade_numbers
from tools.indicators import column_arrays

SIGNAL_COLUMNS = ("direction", "stop", "target")


class Trade(BaseModel):
    model_config = ConfigDict(frozen=True)

    side: Literal[1, -1]
    signal_time: datetime
    entry_time: datetime
    entry_price: float  # after slippage
    exit_time: datetime  # label of the candle in (or at whose open) the exit filled
    exit_price: float  # after slippage
    stop: float
    target: float | None
    exit_reason: ExitReason
    is_open: bool  # True only for end_of_data: marked, not actually closed
    return_pct: float  # net of both fees, per unit of capital, in percent
    r_multiple: float  # net P&L per unit / (entry fill - stop) per unit
    fees_pct: float  # both fees, in percent of the capital put in
    confidence: float
    regime: str | None
    signal_bar: int
    entry_bar: int
    exit_bar: int


class EquityPoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    time: datetime
    equity: float


class BacktestResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    start: datetime  # first candle label
    end: datetime  # last candle label
    candles: int
    fee_rate: float
    slippage_bps: float
    trades: list[Trade]
    # 1.0 at the first candle, then one point per trade at its exit (several may share a time)
    equity: list[EquityPoint]

    def equity_series(self) -> pd.Series:
        """The equity points as a Series; its index may repeat a time (a reversal's exit and a quick stop)."""
        return pd.Series([p.equity for p in self.equity], index=pd.DatetimeIndex([p.time for p in self.equity]))


_TRADES = TypeAdapter(list[Trade])
_POINTS = TypeAdapter(list[EquityPoint])


def _check(candles: pd.DataFrame, signals: pd.DataFrame, regimes: pd.Series | None) -> None:
    _check_candles(candles)
    missing = [c for c in SIGNAL_COLUMNS if c not in signals.columns]
    if missing:
        raise ValueError(f"signals lack columns {missing}")
    _check_alignment(candles, signals.index, regimes)


def _check_candles(candles: pd.DataFrame) -> None:
    index = candles.index
    if len(index) == 0:
        raise ValueError("no candles")
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None or str(index.tz) != "UTC":
        raise ValueError("candles need a UTC DatetimeIndex")
    if not index.is_monotonic_increasing or not index.is_unique:
        raise ValueError("candle index must be strictly increasing")
    missing = [c for c in CANDLE_COLUMNS if c not in candles.columns]
    if missing:
        raise ValueError(f"candles lack columns {missing}")


def _check_alignment(candles: pd.DataFrame, signal_index: pd.Index, regimes: pd.Series | None) -> None:
    # Same index, not merely same length: a shifted signal frame is exactly the look-ahead bug to refuse.
    if not signal_index.equals(candles.index):
        raise ValueError("signals must have exactly the candle index")
    if regimes is not None and not regimes.index.equals(candles.index):
        raise ValueError("regimes must have exactly the candle index")


def run_backtest(
    candles: pd.DataFrame,
    signals: pd.DataFrame,
    *,
    fee_rate: float = 0.001,
    slippage_bps: float = 5,
    regimes: pd.Series | None = None,
) -> BacktestResult:
    """Simulate the signal frame's trades over the candles; see the module docstring for every convention."""
    simulated = _simulate_frame(candles, signals, regimes, slippage_bps)
    return _result(candles, simulated, regimes, fee_rate, slippage_bps)


class TradeOutcomes(NamedTuple):
    """Per trade of `run_backtest(...).trades`, in order: the same numbers, without building the trades."""

    side: np.ndarray  # 1 or -1
    return_pct: np.ndarray
    is_open: np.ndarray


def trade_outcomes(
    candles: pd.DataFrame, signals: pd.DataFrame, *, fee_rate: float = 0.001, slippage_bps: float = 5
) -> TradeOutcomes:
    """`run_backtest`'s trades reduced to side, return and openness (same checks, same errors, same floats).

    For callers that only count wins (the strategy node's analogs): building the pydantic trades,
    their times and the equity curve was over half of a backtest's cost on a few-hundred-candle frame.
    """
    return _outcomes(_simulate_frame(candles, signals, None, slippage_bps), fee_rate, slippage_bps)


def signal_outcomes(
    candles: pd.DataFrame,
    signal_index: pd.Index,
    direction: np.ndarray,
    stop: np.ndarray,
    target: np.ndarray,
    *,
    fee_rate: float = 0.001,
    slippage_bps: float = 5,
) -> TradeOutcomes:
    """`trade_outcomes` of the signal frame these float columns and this index would make, without the frame.

    The strategy node has the columns as arrays before any frame exists; building one only
    to read them back cost more than the simulation. Same checks, same errors, same floats.
    """
    _check_candles(candles)
    _check_alignment(candles, signal_index, None)
    return _outcomes(simulate(candle_prices(candles), direction, stop, target, None, slippage_bps), fee_rate, slippage_bps)


def _outcomes(simulated: Simulated, fee_rate: float, slippage_bps: float) -> TradeOutcomes:
    side, _, _, _, ret, _ = trade_numbers(simulated, fee_rate, slippage_bps)
    return TradeOutcomes(side.astype(int), ret * 100, np.array([r[5] == "end_of_data" for r in simulated.rows], dtype=bool))


def _simulate_frame(
    candles: pd.DataFrame, signals: pd.DataFrame, regimes: pd.Series | None, slippage_bps: float
) -> Simulated:
    _check(candles, signals, regimes)
    prices = candle_prices(candles)
    has_confidence = "confidence" in signals
    # One to_numpy per frame (column_arrays) instead of a Series per column: ~25 µs each in pandas 3.
    raw, stop, target, *rest = column_arrays(signals, *SIGNAL_COLUMNS, *(("confidence",) if has_confidence else ()))
    return simulate(prices, raw, stop, target, rest[0] if rest else None, slippage_bps)


def _result(
    candles: pd.DataFrame,
    simulated: Simulated,
    regimes: pd.Series | None,
    fee_rate: float,
    slippage_bps: float,
) -> BacktestResult:
    index, rows = candles.index, simulated.rows
    start, end = index[0].to_pydatetime(), index[-1].to_pydatetime()
    side, sig, entry, exit_, ret, fees = trade_numbers(simulated, fee_rate, slippage_bps)
    ent, ext = (np.array([r[k] for r in rows], dtype=np.int64) for k in (1, 2))
    stop = simulated.stop[sig]
    target = simulated.target[sig]
    conf = simulated.confidence[sig] if simulated.confidence is not None else np.full(len(sig), np.nan)
    r_mult = (side * (exit_ - entry) - fee_rate * (entry + exit_)) / (side * (entry - stop))
    equity = np.cumprod(1 + ret)
    if regimes is None:
        regime_at: list[str | None] = [None] * len(sig)
    else:
        picked = regimes.iloc[sig]
        regime_at = [None if missing else str(v) for v, missing in zip(picked.tolist(), picked.isna().tolist())]
    why = [r[5] for r in rows]
    # One DatetimeIndex lookup and conversion for all three time columns: each costs ~30 µs in pandas 3.
    count = len(sig)
    times = list(index[np.concatenate((sig, ent, ext))].to_pydatetime())
    columns = {
        "side": side.astype(int).tolist(),
        "signal_time": times[:count],
        "entry_time": times[count : 2 * count],
        "entry_price": entry.tolist(),
        "exit_time": times[2 * count :],
        "exit_price": exit_.tolist(),
        "stop": stop.tolist(),
        "target": [t if math.isfinite(t) else None for t in target.tolist()],
        "exit_reason": why,
        "is_open": [w == "end_of_data" for w in why],
        "return_pct": (ret * 100).tolist(),
        "r_multiple": r_mult.tolist(),
        "fees_pct": (fees * 100).tolist(),
        "confidence": np.nan_to_num(conf).tolist(),
        "regime": regime_at,
        "signal_bar": sig.tolist(),
        "entry_bar": ent.tolist(),
        "exit_bar": ext.tolist(),
    }
    # One validation call for the whole list: ~3x cheaper than constructing trades one by one.
    trades = _TRADES.validate_python([dict(zip(columns, values)) for values in zip(*columns.values())])
    points = _POINTS.validate_python(
        [{"time": start, "equity": 1.0}]
        + [{"time": t, "equity": e} for t, e in zip(columns["exit_time"], equity.tolist(), strict=True)]
    )
    return BacktestResult(
        start=start, end=end, candles=len(index), fee_rate=fee_rate, slippage_bps=slippage_bps,
        trades=trades, equity=points,
    )  # fmt: skip
