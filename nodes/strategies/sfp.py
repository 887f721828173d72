"""Swing failure: a wick takes out the last confirmed swing high (low) and the close falls back inside."""

from __future__ import annotations

import numpy as np
import pandas as pd

from nodes.strategies import Strategy, signal_frame
from tools.pivots import swing_pivots

# Three candles each side: width-2 pivots are every minor wiggle, and their sweeps are noise.
PIVOT_WIDTH = 3
# A sweep in a strong trend is usually continuation, not failure: fade only below this ADX.
MAX_ADX = 25.0
STOP_PAD_ATR = 0.1
REWARD_RISK = 2.0


def _swing_levels(frame: pd.DataFrame, kind: str) -> tuple[pd.Series, pd.Series]:
    """Last swing of `kind` known before each candle, and whether no candle has traded through it since.

    A pivot at row p is confirmed at row p + PIVOT_WIDTH; the level is used from the candle after that.
    """
    pivots = [p for p in swing_pivots(frame["high"], frame["low"], PIVOT_WIDTH) if p.kind == kind]
    confirmed = np.full(len(frame), np.nan)
    confirmed[[p.position + PIVOT_WIDTH for p in pivots]] = [p.price for p in pivots]
    known = pd.Series(confirmed, index=frame.index).ffill().shift(1)
    # Segments start at each confirmation; the most extreme price traded since it, before this candle.
    segment = pd.Series(~np.isnan(confirmed), index=frame.index).cumsum().shift(1).fillna(0)
    price = frame["high"] if kind == "high" else -frame["low"]
    extreme = price.groupby(segment).cummax()
    since = extreme.shift(1).where(segment.shift(1) == segment)
    if kind == "high":
        fresh = since.isna() | (since <= known)
    else:
        fresh = since.isna() | (-since >= known)
    return known, fresh & known.notna()


def evaluate(frame: pd.DataFrame) -> pd.DataFrame:
    high, low, close, atr, adx = (frame[c] for c in ("high", "low", "close", "atr", "adx"))
    swing_high, fresh_high = _swing_levels(frame, "high")
    swing_low, fresh_low = _swing_levels(frame, "low")
    calm = adx < MAX_ADX
    short = calm & fresh_high & (high > swing_high) & (close < swing_high)
    long = calm & fresh_low & (low < swing_low) & (close > swing_low)
    direction = pd.Series(np.select([long, short], [1, -1], 0), index=frame.index)
    stop = pd.Series(np.select([long, short], [low - STOP_PAD_ATR * atr, high + STOP_PAD_ATR * atr], np.nan), index=frame.index)
    risk = (close - stop).abs()
    # Target the opposite swing when it is at least 1R away on the winning side, else 2R.
    opposite = pd.Series(np.select([long, short], [swing_high, swing_low], np.nan), index=frame.index)
    reward = direction * (opposite - close)
    target = (close + direction * REWARD_RISK * risk).where(~(reward >= risk), opposite)
    span = (high - low).where(high > low)
    rejection = pd.Series(np.select([long, short], [(close - low) / span, (high - close) / span], 0.0), index=frame.index)
    calmness = ((MAX_ADX - adx) / 15).clip(0, 1)
    confidence = (0.4 + 0.3 * rejection.fillna(0).clip(0, 1) + 0.3 * calmness.fillna(0)).where(direction != 0, 0.0)
    return signal_frame(direction, confidence, stop, target, close)


def explain(row: pd.Series, signal: pd.Series) -> str:
    if signal["direction"] == 0:
        return (
            f"no swing failure: high {row['high']:.6g} / low {row['low']:.6g}, close {row['close']:.6g}, "
            f"ADX {row['adx']:.1f} (fades only below {MAX_ADX:.0f})"
        )
    if signal["direction"] < 0:
        took, back = f"high {row['high']:.6g} swept the last confirmed swing high", "below"
    else:
        took, back = f"low {row['low']:.6g} swept the last confirmed swing low", "above"
    return (
        f"{took} but the candle closed back {back} it at {row['close']:.6g}, ADX {row['adx']:.1f} < {MAX_ADX:.0f}; "
        f"stop {signal['stop']:.6g} beyond the wick, target {signal['target']:.6g}"
    )


STRATEGY = Strategy(
    name="sfp",
    version="1.0.0",
    kind="oscillator",
    regimes=("RANGING", "VOLATILE"),
    evaluate=evaluate,
    explain=explain,
)
