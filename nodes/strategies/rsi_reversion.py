"""Mean reversion: RSI at an extreme with price outside its Bollinger band, targeting the mid band."""

from __future__ import annotations

import numpy as np
import pandas as pd

from nodes.strategies import Strategy

OVERSOLD = 30.0
OVERBOUGHT = 70.0
STOP_ATR = 1.5


def evaluate(frame: pd.DataFrame) -> pd.DataFrame:
    close, rsi, atr = frame["close"], frame["rsi"], frame["atr"]
    long = (rsi < OVERSOLD) & (close < frame["bb_lower"])
    short = (rsi > OVERBOUGHT) & (close > frame["bb_upper"])
    direction = pd.Series(np.select([long, short], [1, -1], 0), index=frame.index)
    extremity = pd.Series(
        np.select([long, short], [(OVERSOLD - rsi) / 20, (rsi - OVERBOUGHT) / 20], 0.0), index=frame.index
    ).clip(0, 1)
    confidence = (0.4 + 0.6 * extremity).where(direction != 0, 0.0)
    return pd.DataFrame(
        {
            "direction": direction,
            "confidence": confidence.fillna(0.0),
            "stop": close - direction * STOP_ATR * atr,
            "target": frame["bb_mid"],
        }
    )


def explain(row: pd.Series, signal: pd.Series) -> str:
    if signal["direction"] == 0:
        return (
            f"no extreme: needs RSI beyond {OVERSOLD:.0f}/{OVERBOUGHT:.0f} (is {row['rsi']:.1f}) "
            f"with the close outside its Bollinger band ({row['bb_lower']:.6g}–{row['bb_upper']:.6g})"
        )
    band = "lower" if signal["direction"] > 0 else "upper"
    return f"RSI {row['rsi']:.1f} at an extreme, close {row['close']:.6g} beyond the {band} band; target the mid band"


STRATEGY = Strategy(
    name="rsi_reversion",
    version="1.0.0",
    kind="oscillator",
    regimes=("RANGING",),
    evaluate=evaluate,
    explain=explain,
)
