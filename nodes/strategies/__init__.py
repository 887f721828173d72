"""The strategy pool. A strategy is registered by being a module here that defines `STRATEGY`.

A strategy is a pure, vectorized function of one indicator frame: it returns
a signal for every candle of history, the node takes the last one, and a
backtest takes them all, so live decisions and backtests share one code path.
Strategies see candles and indicators only: no broker, no state, no orders.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Literal

import pandas as pd

SIGNAL_COLUMNS = ["direction", "confidence", "stop", "target"]


@dataclass(frozen=True)
class Strategy:
    name: str
    version: str
    kind: Literal["momentum", "oscillator"]
    regimes: tuple[str, ...]
    # frame with indicator columns -> frame of SIGNAL_COLUMNS, one row per candle
    evaluate: Callable[[pd.DataFrame], pd.DataFrame]
    # (indicator row, signal row) of the last candle -> the evidence in words
    explain: Callable[[pd.Series, pd.Series], str]
    # Shadow versions run beside the live one: their signals are recorded, not counted.
    shadow: bool = False

    @property
    def key(self) -> str:
        """Signals are keyed by this: a shadow version must not overwrite its live sibling's signal."""
        return f"{self.name}@{self.version}" if self.shadow else self.name


def signal_frame(direction: pd.Series, confidence: pd.Series, stop: pd.Series, target: pd.Series, close: pd.Series) -> pd.DataFrame:
    """The one shape every strategy returns; flat candles carry no confidence and no levels (close)."""
    acting = direction != 0
    return pd.DataFrame(
        {
            "direction": direction,
            "confidence": confidence.where(acting, 0.0).fillna(0.0),
            "stop": stop.where(acting, close),
            "target": target.where(acting, close),
        }
    )


@cache
def registered_strategies() -> dict[str, Strategy]:
    found: dict[str, Strategy] = {}
    for module_info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        strategy = getattr(module, "STRATEGY", None)
        if isinstance(strategy, Strategy):
            if strategy.key in found:
                raise ValueError(f"two strategies registered as {strategy.key!r}: give one a new name or version")
            found[strategy.key] = strategy
    return dict(sorted(found.items()))
