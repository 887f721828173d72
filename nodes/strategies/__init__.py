"""The strategy pool. A strategy is registered by being a module here that defines `STRATEGY`.

A strategy is a pure, vectorized function of one indicator frame: it returns
a signal for every candle of history, the node takes the last one, and a
backtest takes them all, so live decisions and backtests share one code path.
Strategies see candles and indicators only: no broker, no state, no orders.

They compute on numpy arrays (`columns`, `shift`, `rolling`, ... below mirror the
pandas operations they replace, NaN for NaN): a run evaluates every strategy on a
few hundred rows, where each pandas Series call costs more than its arithmetic.

A strategy may also hand the node its columns before they become a frame: a module
defines `signals(frame)` ending in `signal_arrays(...)`, `evaluate(frame)` as
`frame_of(signals(frame))`, and registers both. The live node (through
`signal_columns`) then skips building a frame it would only read arrays back from;
a strategy with `evaluate` alone works the same, a little slower.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd

from tools.indicators import column_arrays

SIGNAL_COLUMNS = ["direction", "confidence", "stop", "target"]
_SIGNAL_INDEX = pd.Index(SIGNAL_COLUMNS)


@dataclass(frozen=True)
class Strategy:
    name: str
    version: str
    kind: Literal["momentum", "oscillator"]
    regimes: tuple[str, ...]
    # frame with indicator columns -> frame of SIGNAL_COLUMNS, one row per candle
    evaluate: Callable[[pd.DataFrame], pd.DataFrame]
    # (indicator row, signal row of the last candle: a Series or a mapping of its float values) -> the evidence in words
    explain: Callable[[pd.Series, Mapping[str, float]], str]
    # Shadow versions run beside the live one: their signals are recorded, not counted.
    shadow: bool = False
    # Optional: frame with indicator columns -> the SignalArrays `evaluate` builds its frame from
    # (evaluate = frame_of(signals(frame))). The live node reads these and skips the frame.
    signals: Callable[[pd.DataFrame], SignalArrays] | None = None

    @property
    def key(self) -> str:
        """Signals are keyed by this: a shadow version must not overwrite its live sibling's signal."""
        return f"{self.name}@{self.version}" if self.shadow else self.name


Values = pd.Series | np.ndarray


def columns(frame: pd.DataFrame, *names: str) -> tuple[np.ndarray, ...]:
    """The frame's columns as float arrays.

    Strategies compute on numpy arrays: on a few-hundred-row frame, each pandas
    Series operation costs more in per-call overhead than in arithmetic.
    """
    return column_arrays(frame, *names)


def shift(values: np.ndarray, periods: int) -> np.ndarray:
    """`Series.shift(periods)` for a float array: NaN where there is nothing to shift in."""
    out = np.full(len(values), np.nan)
    if periods < len(values):
        out[periods:] = values[: len(values) - periods]
    return out


def diff(values: np.ndarray, periods: int) -> np.ndarray:
    """`Series.diff(periods)`: the change over `periods` candles."""
    return values - shift(values, periods)


def trailing_count(values: np.ndarray, window: int) -> np.ndarray:
    """How many non-NaN values each trailing window of `window` values (this one included) holds."""
    seen = np.cumsum(~np.isnan(values))
    count = seen.copy()
    count[window:] -= seen[:-window]
    return count


def rolling(values: np.ndarray, window: int, reduce: np.ufunc, min_periods: int | None = None) -> np.ndarray:
    """`Series.rolling(window, min_periods).min()/.max()` with reduce = np.fmin/np.fmax (NaNs skipped)."""
    # A zero may come as +0.0 and -0.0, equal but not the same bits: which one a min or max keeps
    # depends on the order it meets them in, so input with a -0.0 keeps the one order of `_rolling_by_lag`.
    zeros = values == 0
    if window < 4 or (zeros.any() and np.signbit(values[zeros]).any()):
        return _rolling_by_lag(values, window, reduce, min_periods)
    # Doubling: `span` holds the reduction of each trailing run of `size` values (fewer at the start).
    # Min and max are idempotent, so two overlapping runs cover a window: log2(window) whole-array steps.
    span, size = values.copy(), 1
    while size * 2 <= window:
        span[size:] = reduce(span[size:], span[:-size])
        size *= 2
    out, rest = span, window - size
    if rest and rest < len(span):
        out = span.copy()
        out[rest:] = reduce(span[rest:], span[: len(span) - rest])
    if min_periods == 1:
        # NaN exactly where the window has no value, as the count would say; the mask also makes it plain NaN.
        out[np.isnan(out)] = np.nan
    else:
        out[trailing_count(values, window) < (window if min_periods is None else min_periods)] = np.nan
    return out


def _rolling_by_lag(values: np.ndarray, window: int, reduce: np.ufunc, min_periods: int | None) -> np.ndarray:
    """`rolling`, one whole-array step per lag: the current value first, then each older one in turn."""
    n = len(values)
    padded = np.concatenate((np.full(window - 1, np.nan), values))
    out = values.copy()
    for lag in range(1, window):
        out = reduce(out, padded[window - 1 - lag : window - 1 - lag + n])
    out[trailing_count(values, window) < (window if min_periods is None else min_periods)] = np.nan
    return out


def clip01(values: np.ndarray) -> np.ndarray:
    """`Series.clip(0, 1)`: NaN stays NaN."""
    return np.clip(values, 0.0, 1.0)


def zero_nan(values: np.ndarray) -> np.ndarray:
    """`Series.fillna(0)`."""
    return np.where(np.isnan(values), 0.0, values)


class SignalArrays(NamedTuple):
    """A signal frame's columns as arrays, before the frame is built: what the strategy node reads.

    Building the four-column frame costs more than most strategies' arithmetic on a few hundred
    rows, and the node only takes arrays back out of it. `direction` keeps its own dtype (int
    for the strategies' `select`), as the frame's column does.
    """

    direction: np.ndarray
    confidence: np.ndarray
    stop: np.ndarray
    target: np.ndarray
    index: pd.Index


def signal_arrays(
    direction: Values, confidence: Values, stop: Values, target: Values, close: Values, index: pd.Index | None = None
) -> SignalArrays:
    """`signal_frame`'s columns: flat candles carry no confidence and no levels (close).

    Takes Series or arrays; with arrays, `index` is the indicator frame's index.
    """
    if index is None:
        index = close.index  # type: ignore[union-attr]
    direction, close = np.asarray(direction), np.asarray(close, dtype=float)
    acting = direction != 0
    confidence = np.where(acting, np.asarray(confidence, dtype=float), 0.0)
    stop = np.where(acting, np.asarray(stop, dtype=float), close)
    target = np.where(acting, np.asarray(target, dtype=float), close)
    return SignalArrays(direction, zero_nan(confidence), stop, target, index)


def frame_of(signals: SignalArrays) -> pd.DataFrame:
    """The one shape every strategy's `evaluate` returns, built from its columns."""
    # Positional keys, then the one shared column Index: inferring a string Index from the keys
    # (and hashing it at the first lookup) would cost more than the rest of the frame.
    frame = pd.DataFrame(dict(enumerate(signals[:4])), index=signals.index)
    frame.columns = _SIGNAL_INDEX
    return frame


def signal_frame(
    direction: Values, confidence: Values, stop: Values, target: Values, close: Values, index: pd.Index | None = None
) -> pd.DataFrame:
    """The one shape every strategy returns; flat candles carry no confidence and no levels (close).

    Takes Series or arrays; with arrays, `index` is the indicator frame's index.
    """
    return frame_of(signal_arrays(direction, confidence, stop, target, close, index))


SignalColumns = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, pd.DataFrame | SignalArrays]


def signal_columns(strategy: Strategy, frame: pd.DataFrame) -> SignalColumns:
    """(direction, confidence, stop, target) of `strategy.evaluate(frame)` as the float arrays
    `column_arrays` reads from that frame, and the signals themselves for a backtest.

    A strategy with a `signals` function skips building the frame; one without is evaluated
    as it always was. Arrays a frame would not take as they are (another length, a scalar, a
    non-numeric direction) go through the frame, so its errors and conversions stay the same.
    """
    if strategy.signals is not None:
        arrays = strategy.signals(frame)
        rows = (len(arrays.index),)
        if (
            arrays.direction.dtype.kind in "biuf"
            and np.shape(arrays.direction) == rows
            and all(np.shape(column) == rows and column.dtype == np.float64 for column in arrays[1:4])
        ):
            # A frame's int (or bool) column reads back as these floats; the float columns as they are.
            return arrays.direction.astype(float), arrays.confidence, arrays.stop, arrays.target, arrays
        signals = frame_of(arrays)
    else:
        signals = strategy.evaluate(frame)
    direction, confidence, stop, target = column_arrays(signals, *SIGNAL_COLUMNS)
    return direction, confidence, stop, target, signals


def select(conditions: list[np.ndarray], choices: list[Values | float], default: float) -> np.ndarray:
    """`np.select` as nested `np.where`: the first true condition picks, as in select, at a fraction of its
    ~15 µs per-call overhead (the strategies call it a few times per run). Same dtype: int choices stay int.
    """
    out: np.ndarray | float = default
    for condition, choice in zip(reversed(conditions), reversed(choices), strict=True):
        out = np.where(condition, choice, out)
    return np.asarray(out)


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
