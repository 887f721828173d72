"""Mean reversion: RSI at an extreme with price outside its Bollinger band, targeting the mid band."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from nodes.strategies import SignalArrays, Strategy, clip01, columns, frame_of, select, signal_arrays

OVERSOLD = 30.0
OVERBOUGHT = 70.0
# Fading an extreme works in a range; in a strong trend the extreme is the trend itself.
MAX_ADX = 25.0
STOP_ATR = 1.5


def signals(frame: pd.DataFrame) -> SignalArrays:
    close, rsi, atr, adx, lower, mid, upper = columns(frame, "close", "rsi", "atr", "adx", "bb_lower", "bb_mid", "bb_upper")
    calm = adx < MAX_ADX
    long = calm & (rsi < OVERSOLD) & (close < lower)
    short = calm & (rsi > OVERBOUGHT) & (close > upper)
    direction = select([long, short], [1, -1], 0)
    extremity = clip01(select([long, short], [(OVERSOLD - rsi) / 20, (rsi - OVERBOUGHT) / 20], 0.0))
    confidence = 0.4 + 0.6 * extremity
    return signal_arrays(direction, confidence, close - direction * STOP_ATR * atr, mid, close, frame.index)


def evaluate(frame: pd.DataFrame) -> pd.DataFrame:
    return frame_of(signals(frame))


def explain(row: pd.Series, signal: Mapping[str, float]) -> str:
    if signal["direction"] == 0:
        return (
            f"no fade: needs ADX < {MAX_ADX:.0f} (is {row['adx']:.1f}), RSI beyond {OVERSOLD:.0f}/{OVERBOUGHT:.0f} "
            f"(is {row['rsi']:.1f}) and the close outside its Bollinger band ({row['bb_lower']:.6g}–{row['bb_upper']:.6g})"
        )
    band = "lower" if signal["direction"] > 0 else "upper"
    return (
        f"RSI {row['rsi']:.1f} at an extreme, close {row['close']:.6g} beyond the {band} band, "
        f"ADX {row['adx']:.1f} (no trend); target the mid band"
    )


STRATEGY = Strategy(
    name="rsi_reversion",
    version="1.0.0",
    kind="oscillator",
    regimes=("RANGING",),
    evaluate=evaluate,
    signals=signals,
    explain=explain,
)
