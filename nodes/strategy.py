"""L4 one strategy branch (fanned out with `Send`): the last candle's signal of one strategy.

A strategy that raises is isolated: its branch records the error as a FLAT
signal and the other branches go on.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from langgraph.runtime import Runtime

from nodes.common import event, services
from nodes.strategies import SIGNAL_COLUMNS, SignalArrays, Strategy, registered_strategies, signal_columns
from state import StrategyTask
from state.sections import Signal
from tools.backtest import signal_outcomes, trade_outcomes
from tools.context import Services
from tools.frames import IndicatorFrame

NODE = "strategy"
RECENT_CANDLES = 50
FLIP_WINDOW = 10


def analogs(
    frame: pd.DataFrame, signals: pd.DataFrame | SignalArrays, side: int, fee_rate: float, slippage_bps: float
) -> tuple[int, float | None, float | None]:
    """(closed past trades in today's direction, their win rate, the win rate of all closed past trades).

    From `trade_outcomes`, `run_backtest`'s numbers without its pydantic trades: only wins are counted here.
    Signals given as arrays (no frame built) go through `signal_outcomes`, the same simulation.
    """
    if isinstance(signals, SignalArrays):
        # The frame's direction column would read back as floats, as `signal_columns` gives them.
        outcomes = signal_outcomes(
            frame, signals.index, signals.direction.astype(float), signals.stop, signals.target,
            fee_rate=fee_rate, slippage_bps=slippage_bps,
        )  # fmt: skip
    else:
        outcomes = trade_outcomes(frame, signals, fee_rate=fee_rate, slippage_bps=slippage_bps)
    # A dozen trades: counted in plain Python, where each numpy call would cost more than the count.
    columns = (column.tolist() for column in outcomes)
    closed = [(trade_side, return_pct > 0) for trade_side, return_pct, is_open in zip(*columns, strict=True) if not is_open]
    same = [won for trade_side, won in closed if trade_side == side]

    def rate(wins: list[bool]) -> float | None:
        return sum(wins) / len(wins) if wins else None

    return len(same), rate(same), rate([won for _, won in closed])


def signal_habits(directions: pd.Series | np.ndarray) -> tuple[float, float, int]:
    """(recent onset rate, historical onset rate, side flips lately) of one strategy's signal series.

    Onsets, not active candles: a trend strategy is "on" for every candle of a
    trend, which is its habit, not an anomaly; starting a new signal every few
    candles is. Computed on the numpy array: pandas' per-call overhead dominates at this size.
    """
    values = np.asarray(directions, dtype=float)
    count = len(values)
    if count == 0:
        return float("nan"), float("nan"), 0
    # The first candle is an onset whenever it signals (nothing came before it).
    changed = np.empty(count, dtype=bool)
    changed[0] = True
    np.not_equal(values[1:], values[:-1], out=changed[1:])
    onsets = changed & (values != 0)
    recent = onsets[-RECENT_CANDLES:]
    # Shares as count / length: the exact sum and the one rounding `mean` makes, without its ~5 µs call.
    recent_rate, historical_rate = np.count_nonzero(recent) / len(recent), np.count_nonzero(onsets) / count
    # The last few sides in plain Python: a dozen floats, where each numpy call costs more than the loop.
    sides = [side for side in values[-FLIP_WINDOW:].tolist() if side != 0]
    flips = sum(later != earlier for earlier, later in zip(sides, sides[1:]))
    return recent_rate, historical_rate, flips


def _signal(chosen: Strategy, loaded: IndicatorFrame, fee_rate: float, slippage_bps: float, as_of: datetime) -> Signal:
    """The strategy's signal on the frame's newest candle (stamped `as_of`): a function of the frame and the costs."""
    timeframe = loaded.timeframe
    # The signal columns as arrays (a strategy with `signals` builds no frame), read by position:
    # a Series label lookup costs tens of µs in pandas 3.
    directions, confidences, stops, targets, signals = signal_columns(chosen, loaded.frame)
    side = int(directions[-1])
    direction = {1: "LONG", -1: "SHORT"}.get(side, "FLAT")
    acting = direction != "FLAT"
    recent_rate, historical_rate, flips = signal_habits(directions)
    analog_count, analog_rate, overall_rate = analogs(loaded.frame, signals, side, fee_rate, slippage_bps) if acting else (None, None, None)
    target = float(targets[-1])
    # The last signal row as a mapping of the very float64 values `signals.iloc[-1]` holds
    # (the frame upcasts its int direction): building that Series cost ~30 µs per branch.
    last_signal = dict(zip(SIGNAL_COLUMNS, (directions[-1], confidences[-1], stops[-1], targets[-1]), strict=True))
    return Signal(
        as_of=as_of,
        produced_by=f"{NODE}:{chosen.key}",
        strategy=chosen.name,
        version=chosen.version,
        kind=chosen.kind,
        direction=direction,
        confidence=float(confidences[-1]) if acting else 0.0,
        entry=float(loaded.last["close"]) if acting else None,
        stop=float(stops[-1]) if acting else None,
        targets=[target] if acting and math.isfinite(target) else [],
        timeframe=timeframe,
        rationale=chosen.explain(loaded.last, last_signal),
        shadow=chosen.shadow,
        recent_rate=recent_rate,
        historical_rate=historical_rate,
        recent_flips=flips,
        analog_trades=analog_count,
        analog_win_rate=analog_rate,
        overall_win_rate=overall_rate,
    )


async def strategy(task: StrategyTask, runtime: Runtime[Services]) -> dict[str, Any]:
    request, market = task["request"], task["market"]
    chosen = registered_strategies()[task["strategy"]]
    timeframe = request.decision_timeframe
    produced_by = f"{NODE}:{chosen.key}"
    try:
        loaded = await services(runtime, request).frames.get(request.symbol, timeframe, market.as_of)
        settings = services(runtime, request).settings
        costs = (settings.fee_rate, settings.slippage_bps)
        # The decision timeframe's frame outlives a 5m scan cycle: its signal is reused, stamped with this run's clock.
        signal = loaded.derive(
            (NODE, chosen.key, chosen.name, chosen.version, *costs), lambda frame: _signal(chosen, frame, *costs, market.as_of)
        )
        if signal.as_of != market.as_of:
            signal = signal.model_copy(update={"as_of": market.as_of})
    except Exception as error:  # isolation: one broken strategy must not sink the run
        signal = Signal(
            as_of=market.as_of,
            produced_by=produced_by,
            strategy=chosen.name,
            version=chosen.version,
            kind=chosen.kind,
            direction="FLAT",
            confidence=0.0,
            timeframe=timeframe,
            rationale="strategy failed",
            error=f"{type(error).__name__}: {error}",
            shadow=chosen.shadow,
        )
    detail = {"confidence": signal.confidence, "error": signal.error}
    return {
        "signals": {chosen.key: signal},
        "audit": [event(produced_by, "STRATEGY_SIGNAL", signal.direction, market.as_of, detail)],
    }
