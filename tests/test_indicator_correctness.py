"""Indicator correctness and absence of look-ahead, against references that share no code with `enrich`.

`enrich` computes its columns with TA-Lib's C kernels, called directly on numpy arrays
with the arguments pandas-ta would pass them (pandas-ta itself dispatches to these kernels
when TA-Lib is installed; asserted below). Each column is checked against two independent
references:

* pandas-ta's own pure-Python implementation, `talib=False`. What that flag really
  does in pandas-ta 0.4.71b0 (read from its source):
    - ema:    pandas `ewm(span=n, adjust=False)` seeded, like TA-Lib, with the SMA of the
              first n closes ("presma") -> identical convention, compared on every row.
    - rsi:    pandas diff + `rma` = `ewm(alpha=1/n, adjust=False)` seeded with the FIRST
              diff (not Wilder's n-bar average) -> compared only after a warm-up.
    - atr:    pandas true range whose first row is high-low (TA-Lib has no TR at row 0),
              SMA of TR[0:n] placed at row n-1, then `rma` -> compared after a warm-up.
    - adx:    pandas DM + `rma`, BUT its internal `atr(...)` call does not forward
              `talib=False`, so TA-Lib's ATR is still used for k = 100 / ATR. k cancels in
              DX = |+DI - -DI| / (+DI + -DI); only ATR's NaN warm-up mask leaks through, so
              the values are still an independent computation. (The hand-written Wilder ADX
              below does not touch TA-Lib at all.) `rma` seeding -> compared after a warm-up.
    - bbands: numpy-convolve SMA and pandas `rolling().var(ddof)`; its default ddof=1
              (sample std) differs from TA-Lib/Bollinger's population std, so the reference
              is called with ddof=0. Identical convention otherwise -> every row.
  `_talib_blocked` replaces TA-Lib's kernels with functions that raise, proving that
  the references (except ADX's internal ATR, allowed explicitly) run without TA-Lib.
* hand-written textbook definitions in this file (loops over numpy arrays):
    EMA   alpha = 2/(n+1), seeded with the SMA of the first n closes at row n-1.
    RSI   Wilder: average gain/loss seeded with the mean of the first n diffs (rows 1..n),
          then avg = (avg*(n-1) + x)/n; RSI = 100 - 100/(1+RS), 100 when avg loss is 0.
    ATR   Wilder: TR = max(H-L, |H-C[-1]|, |L-C[-1]|) from row 1, seeded with the mean of
          TR rows 1..n at row n, then the Wilder recursion.
    ADX   Wilder: +DM/-DM, Wilder-smoothed like ATR, DX, ADX = Wilder average of DX seeded
          with the mean of DX rows n..2n-1. TA-Lib seeds the DM/TR sums with only n-1 values
          (rows 1..n-1), a seeding difference that decays like (13/14)^k -> after a warm-up.
    BB    mid = SMA(20), bands = mid +- 2 * population std of the same 20 closes.

Note: `enrich` passes the band width (2.0 std each side) to `talib.BBANDS` explicitly; the
hand-written reference (k = 2) pins the width.

Tolerances (all rows from the first defined one unless a warm-up is named):
    same seeding convention (EMA, RSI, ATR, BB hand-written; EMA, BB pandas-ta): rtol 1e-9
    different seeding, rows >= 200 of 300: RSI abs 1e-4 points, ATR rtol 1e-6,
        ADX abs 1e-3 points (observed: 5e-6, 4e-8, 9e-5).
    look-ahead: a truncated computation must equal the full one to rtol 1e-12.
"""

from __future__ import annotations

import functools
import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pandas_ta as ta
import pytest
import talib
from pandas_ta.maps import Imports

from nodes.regime import classify
from nodes.strategies import SIGNAL_COLUMNS, registered_strategies
from nodes.structure import describe
from nodes.support_resistance import body_levels
from tools.frames import IndicatorFrame
from tools.indicators import ADX_LENGTH, ATR_LENGTH, BB_LENGTH, EMA_FAST, EMA_SLOW, RSI_LENGTH, enrich
from tools.market_data.builtin import BuiltinSource
from tools.pivots import label_sequence, swing_pivots

UNTIL = datetime(2025, 6, 1, tzinfo=UTC)
N = 300
COLUMNS = ["ema_fast", "ema_slow", "rsi", "atr", "adx", "bb_lower", "bb_mid", "bb_upper", "bb_width"]
SAME_SEED_RTOL = 1e-9
WARMUP = 200
LOOKAHEAD_RTOL = 1e-12
CUTS = (150, 200, 250)


# --- data ------------------------------------------------------------------------------
def _builtin(scenario: str | None, symbol: str = "BTC/USDT", timeframe: str = "1h") -> pd.DataFrame:
    return BuiltinSource(scenario).candles(symbol, timeframe, until=UNTIL, limit=N)


# natural market; a crash (rsi_reversion fires in it); a volatile market on another price scale
DATASETS = {
    "natural": lambda: _builtin(None),
    "crash": lambda: _builtin("crash"),
    "volatile_sol": lambda: _builtin("volatile", "SOL/USDT"),
}


@pytest.fixture(scope="module", params=list(DATASETS))
def raw(request: pytest.FixtureRequest) -> pd.DataFrame:
    candles = DATASETS[request.param]()
    assert len(candles) == N and candles.index.is_monotonic_increasing
    return candles


@pytest.fixture(scope="module")
def enriched(raw: pd.DataFrame) -> pd.DataFrame:
    return enrich(raw)


@pytest.fixture(scope="module")
def hand_refs(raw: pd.DataFrame) -> dict[str, np.ndarray]:
    return hand_references(raw)


@pytest.fixture(scope="module")
def python_refs(raw: pd.DataFrame) -> dict[str, np.ndarray]:
    return python_references(raw)


def hand_made(n: int = 160) -> pd.DataFrame:
    """A drifting wave with chop, a flat stretch (zero diffs), a gap down and one wick spike."""
    t = np.arange(n, dtype=float)
    close = 100 + 8 * np.sin(t / 7) + 0.05 * t + 0.4 * (-1.0) ** t
    close[40:46] = close[39]  # six unchanged closes
    close[80:] -= 6.0  # gap down
    open_ = np.concatenate(([close[0] - 0.3], close[:-1]))
    high = np.maximum(open_, close) + 0.2 + 0.1 * (t % 3)
    low = np.minimum(open_, close) - 0.2 - 0.1 * (t % 4)
    high[120] += 5.0  # a single wick: TR spike that ATR and ADX must see
    index = pd.date_range("2025-01-01", periods=n, freq="1h", tz="UTC", name="time")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": 1.0}, index=index)


# --- hand-written textbook references ----------------------------------------------------
def ref_ema(close: pd.Series, n: int) -> np.ndarray:
    c = close.to_numpy(float)
    out = np.full(len(c), np.nan)
    alpha = 2.0 / (n + 1)
    value = c[:n].mean()
    out[n - 1] = value
    for i in range(n, len(c)):
        value = alpha * c[i] + (1 - alpha) * value
        out[i] = value
    return out


def wilder_average(values: np.ndarray, n: int, first: int) -> np.ndarray:
    """Wilder's smoothing of values[first:], seeded with the mean of its first n values."""
    out = np.full(len(values), np.nan)
    value = values[first : first + n].mean()
    out[first + n - 1] = value
    for i in range(first + n, len(values)):
        value = (value * (n - 1) + values[i]) / n
        out[i] = value
    return out


def ref_rsi(close: pd.Series, n: int) -> np.ndarray:
    c = close.to_numpy(float)
    diff = np.concatenate(([np.nan], np.diff(c)))
    gain = wilder_average(np.where(diff > 0, diff, 0.0), n, 1)
    loss = wilder_average(np.where(diff < 0, -diff, 0.0), n, 1)
    out = np.full(len(c), np.nan)
    for i in range(len(c)):
        if not np.isnan(gain[i]):
            out[i] = 100.0 if loss[i] == 0 else 100.0 - 100.0 / (1.0 + gain[i] / loss[i])
    return out


def ref_true_range(high: pd.Series, low: pd.Series, close: pd.Series) -> np.ndarray:
    h, lo, c = high.to_numpy(float), low.to_numpy(float), close.to_numpy(float)
    tr = np.full(len(c), np.nan)
    for i in range(1, len(c)):
        tr[i] = max(h[i] - lo[i], abs(h[i] - c[i - 1]), abs(lo[i] - c[i - 1]))
    return tr


def ref_atr(high: pd.Series, low: pd.Series, close: pd.Series, n: int) -> np.ndarray:
    return wilder_average(ref_true_range(high, low, close), n, 1)


def ref_adx(high: pd.Series, low: pd.Series, close: pd.Series, n: int) -> np.ndarray:
    h, lo = high.to_numpy(float), low.to_numpy(float)
    plus_dm, minus_dm = np.zeros(len(h)), np.zeros(len(h))
    for i in range(1, len(h)):
        up, down = h[i] - h[i - 1], lo[i - 1] - lo[i]
        plus_dm[i] = up if up > down and up > 0 else 0.0
        minus_dm[i] = down if down > up and down > 0 else 0.0
    atr = wilder_average(ref_true_range(high, low, close), n, 1)
    plus_di = 100 * wilder_average(plus_dm, n, 1) / atr
    minus_di = 100 * wilder_average(minus_dm, n, 1) / atr
    dx = 100 * np.abs(plus_di - minus_di) / (plus_di + minus_di)
    return wilder_average(dx, n, n)


def ref_bbands(close: pd.Series, n: int, k: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = close.to_numpy(float)
    mid, std = np.full(len(c), np.nan), np.full(len(c), np.nan)
    for i in range(n - 1, len(c)):
        window = c[i - n + 1 : i + 1]
        mid[i] = window.sum() / n
        std[i] = math.sqrt(((window - mid[i]) ** 2).sum() / n)
    return mid - k * std, mid, mid + k * std


def hand_references(candles: pd.DataFrame) -> dict[str, np.ndarray]:
    high, low, close = candles["high"], candles["low"], candles["close"]
    lower, mid, upper = ref_bbands(close, BB_LENGTH, 2.0)
    return {
        "ema_fast": ref_ema(close, EMA_FAST),
        "ema_slow": ref_ema(close, EMA_SLOW),
        "rsi": ref_rsi(close, RSI_LENGTH),
        "atr": ref_atr(high, low, close, ATR_LENGTH),
        "adx": ref_adx(high, low, close, ADX_LENGTH),
        "bb_lower": lower,
        "bb_mid": mid,
        "bb_upper": upper,
        "bb_width": (upper - lower) / mid,
    }


# --- pandas-ta's pure-Python path, with TA-Lib's kernels blocked -------------------------
TALIB_KERNELS = ("EMA", "SMA", "RSI", "ATR", "TRANGE", "ADX", "PLUS_DM", "MINUS_DM", "BBANDS", "STDDEV", "VAR")


class TalibCalled(AssertionError):
    pass


def _block(monkeypatch: pytest.MonkeyPatch, allow: tuple[str, ...] = ()) -> None:
    def refuse(name: str):
        def kernel(*args, **kwargs):
            raise TalibCalled(f"TA-Lib {name} was called")

        return kernel

    for name in TALIB_KERNELS:
        if name not in allow:
            # pandas-ta imports kernels at call time (`from talib import EMA`), so this takes effect
            monkeypatch.setattr(talib, name, refuse(name))


def python_references(candles: pd.DataFrame) -> dict[str, np.ndarray]:
    high, low, close = candles["high"], candles["low"], candles["close"]
    with pytest.MonkeyPatch.context() as patch:
        _block(patch)
        bands = ta.bbands(close, length=BB_LENGTH, lower_std=2.0, upper_std=2.0, ddof=0, talib=False)
        refs = {
            "ema_fast": ta.ema(close, length=EMA_FAST, talib=False),
            "ema_slow": ta.ema(close, length=EMA_SLOW, talib=False),
            "rsi": ta.rsi(close, length=RSI_LENGTH, talib=False),
            "atr": ta.atr(high, low, close, length=ATR_LENGTH, talib=False),
            "bb_lower": bands.iloc[:, 0],
            "bb_mid": bands.iloc[:, 1],
            "bb_upper": bands.iloc[:, 2],
        }
    with pytest.MonkeyPatch.context() as patch:
        # pandas-ta's adx() calls atr() without forwarding talib=False: TA-Lib's ATR is allowed, nothing
        # else (its k = 100/ATR cancels in DX; the hand-written ADX is the TA-Lib-free reference)
        _block(patch, allow=("ATR",))
        refs["adx"] = ta.adx(high, low, close, length=ADX_LENGTH, talib=False)[f"ADX_{ADX_LENGTH}"]
    out = {k: np.asarray(v, float) for k, v in refs.items()}
    out["bb_width"] = (out["bb_upper"] - out["bb_lower"]) / out["bb_mid"]
    return out


# --- comparison helpers -------------------------------------------------------------------
def assert_matches(
    name: str, got: pd.Series | np.ndarray, ref: np.ndarray, start: int, *, rtol: float = 0.0, atol: float = 0.0
) -> None:
    got = np.asarray(got, float)[start:]
    ref = np.asarray(ref, float)[start:]
    assert not np.isnan(ref).all(), f"{name}: reference has no values from row {start}"
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=f"{name}: NaN rows differ from row {start}")
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol, equal_nan=True, err_msg=name)


def first_defined(values: np.ndarray) -> int:
    return int(np.flatnonzero(~np.isnan(values))[0])


def assert_same_result(a: object, b: object, path: str = "") -> None:
    """Deep equality of node results (pydantic models, lists, floats to LOOKAHEAD_RTOL)."""
    if hasattr(a, "model_dump"):
        assert type(a) is type(b), path
        a, b = a.model_dump(), b.model_dump()
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{path}: {a} != {b}"
        for key in a:
            assert_same_result(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), f"{path}: {a} != {b}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_result(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=LOOKAHEAD_RTOL) or (math.isnan(a) and math.isnan(b)), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


# === 1. correctness against independent references =========================================
def test_enrich_runs_on_talib_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Otherwise 'enrich vs talib=False' would compare a code path with itself."""
    assert Imports["talib"], "TA-Lib is not importable: enrich would use pandas-ta's Python path"
    _block(monkeypatch)
    with pytest.raises(TalibCalled):
        enrich(hand_made())


def test_python_references_do_not_touch_talib() -> None:
    refs = python_references(hand_made())
    assert set(refs) == set(COLUMNS)
    assert all(not np.isnan(v).all() for v in refs.values())


@pytest.mark.parametrize("column", COLUMNS)
def test_enrich_matches_hand_written_textbook_definition(
    enriched: pd.DataFrame, hand_refs: dict[str, np.ndarray], column: str
) -> None:
    ref = hand_refs[column]
    if column == "adx":  # textbook seeds the Wilder DM/TR sums with n values, TA-Lib with n-1
        assert_matches(column, enriched[column], ref, WARMUP, atol=1e-3)
    else:  # same seeding convention as TA-Lib: every row, including the warm-up and the seed
        assert first_defined(enriched[column].to_numpy()) == first_defined(ref)
        assert_matches(column, enriched[column], ref, 0, rtol=SAME_SEED_RTOL)


@pytest.mark.parametrize("column", COLUMNS)
def test_enrich_matches_pandas_ta_python_path(
    enriched: pd.DataFrame, python_refs: dict[str, np.ndarray], column: str
) -> None:
    ref = python_refs[column]
    if column == "rsi":
        assert_matches(column, enriched[column], ref, WARMUP, atol=1e-4)
    elif column == "atr":
        assert_matches(column, enriched[column], ref, WARMUP, rtol=1e-6)
    elif column == "adx":
        assert_matches(column, enriched[column], ref, WARMUP, atol=1e-3)
    else:  # ema, bbands: same seeding / window convention
        assert_matches(column, enriched[column], ref, 0, rtol=SAME_SEED_RTOL)


@functools.cache
def _hand_made_refs(kind: str) -> dict[str, np.ndarray]:
    return (hand_references if kind == "hand" else python_references)(hand_made())


@pytest.mark.parametrize("column", COLUMNS)
def test_enrich_on_hand_made_series(column: str) -> None:
    candles = hand_made()
    enriched = enrich(candles)
    hand = _hand_made_refs("hand")[column]
    python = _hand_made_refs("python")[column]
    # ADX: only seeding differs, decaying ~(13/14)^k; 160 rows leave a short tail (observed 5e-3, 8e-3 at 140)
    if column == "adx":
        assert_matches(column, enriched[column], hand, 130, atol=1e-2)
        assert_matches(column, enriched[column], python, 145, atol=1e-2)
        return
    assert_matches(column, enriched[column], hand, 0, rtol=SAME_SEED_RTOL)
    if column == "rsi":
        assert_matches(column, enriched[column], python, 100, atol=1e-2)
    elif column == "atr":
        assert_matches(column, enriched[column], python, 100, rtol=1e-4)
    else:
        assert_matches(column, enriched[column], python, 0, rtol=SAME_SEED_RTOL)


def test_hand_made_series_known_values() -> None:
    """Spot values a reader can verify: RSI saturation and the wick's true range."""
    candles = hand_made()
    enriched = enrich(candles)
    tr = ref_true_range(candles["high"], candles["low"], candles["close"])
    # the wick at row 120 makes TR there its high-low range (5 above any neighbour's), so ATR jumps by ~TR/14
    jump = enriched["atr"].iloc[120] - enriched["atr"].iloc[119] * 13 / 14
    assert jump == pytest.approx(tr[120] / 14, rel=1e-9)
    assert tr[120] > 5.0
    # all-gain series: Wilder RSI is exactly 100, EMA of a constant is the constant
    up = pd.DataFrame({"open": 1.0, "high": 0.0, "low": 0.0, "close": np.arange(1.0, 41.0)})
    up["high"], up["low"] = up["close"] + 0.5, up["close"] - 0.5
    flat = enrich(up.assign(close=5.0, high=5.5, low=4.5))
    assert enrich(up)["rsi"].iloc[20:].eq(100.0).all()
    assert flat["ema_fast"].iloc[19:].eq(5.0).all()
    np.testing.assert_allclose(flat["atr"].iloc[14:], 1.0, rtol=1e-12)


# === 2. no look-ahead ======================================================================
@pytest.mark.parametrize("t", (30, 60, 120, *CUTS, N - 2))
def test_enrich_row_t_ignores_later_candles(raw: pd.DataFrame, enriched: pd.DataFrame, t: int) -> None:
    full = enriched
    truncated = enrich(raw.iloc[: t + 1])
    assert len(truncated) == t + 1
    got, want = truncated[COLUMNS].iloc[-1].to_numpy(float), full[COLUMNS].iloc[t].to_numpy(float)
    np.testing.assert_allclose(got, want, rtol=LOOKAHEAD_RTOL, equal_nan=True, err_msg=f"row {t}")
    # every earlier row too, not only the last
    np.testing.assert_allclose(
        truncated[COLUMNS].to_numpy(float),
        full[COLUMNS].iloc[: t + 1].to_numpy(float),
        rtol=LOOKAHEAD_RTOL,
        equal_nan=True,
    )


@pytest.mark.parametrize("width", (2, 3))  # structure/support_resistance use 2, fibonacci 3
def test_swing_pivots_are_known_exactly_width_candles_later(raw: pd.DataFrame, width: int) -> None:
    high, low = raw["high"], raw["low"]
    full = swing_pivots(high, low, width)
    assert len(full) > 20
    for pivot in full:
        t = pivot.position
        if t + width >= N:
            continue
        confirmed = swing_pivots(high.iloc[: t + width + 1], low.iloc[: t + width + 1], width)
        assert pivot in confirmed, f"{pivot} not reported once {width} later candles exist"
        early = swing_pivots(high.iloc[: t + width], low.iloc[: t + width], width)
        assert all(p.position != t for p in early), f"{pivot} reported before it could be confirmed"
    # every prefix reports exactly the full pivots it can confirm: nothing extra, nothing moved
    for n in range(2 * width + 1, N + 1):
        prefix = swing_pivots(high.iloc[:n], low.iloc[:n], width)
        assert prefix == [p for p in full if p.position <= n - 1 - width], f"prefix of {n} candles"


@pytest.mark.parametrize("node", [classify, describe, body_levels], ids=lambda f: f.__name__)
@pytest.mark.parametrize("t", (120, *CUTS, N - 1))
def test_nodes_at_t_ignore_later_candles(raw: pd.DataFrame, enriched: pd.DataFrame, node, t: int) -> None:
    from_full = node(IndicatorFrame("1h", enriched.iloc[: t + 1]))
    from_truncated = node(IndicatorFrame("1h", enrich(raw.iloc[: t + 1])))
    assert_same_result(from_full, from_truncated, node.__name__)


def _signal_rows(signals: pd.DataFrame) -> list[int]:
    """The fixed cut points plus rows where a signal starts or ends and the first/last live rows."""
    direction = signals["direction"].to_numpy()
    changes = np.flatnonzero(np.diff(direction) != 0) + 1
    live = np.flatnonzero(direction != 0)
    return sorted({*CUTS, *changes.tolist(), *live[:2].tolist(), *live[-2:].tolist()})


@pytest.mark.parametrize("name", sorted(registered_strategies()))
def test_strategy_signals_at_t_ignore_later_candles(raw: pd.DataFrame, enriched: pd.DataFrame, name: str) -> None:
    evaluate = registered_strategies()[name].evaluate
    signals = evaluate(enriched)
    full = signals[SIGNAL_COLUMNS].to_numpy(float)
    rows = _signal_rows(signals)
    # evaluate alone: its row t from the indicator frame cut at t
    for t in sorted({*range(EMA_SLOW, N, 5), *rows}):
        cut = evaluate(enriched.iloc[: t + 1])[SIGNAL_COLUMNS].to_numpy(float)[-1]
        np.testing.assert_allclose(cut, full[t], rtol=LOOKAHEAD_RTOL, equal_nan=True, err_msg=f"{name} row {t}")
    # candles cut before enrich, at the cut points and the first/last few signal changes
    for t in sorted({*CUTS, *rows[:6], *rows[-6:]}):
        cut = evaluate(enrich(raw.iloc[: t + 1]))[SIGNAL_COLUMNS].to_numpy(float)[-1]
        np.testing.assert_allclose(cut, full[t], rtol=LOOKAHEAD_RTOL, equal_nan=True, err_msg=f"{name} raw row {t}")


def test_look_ahead_data_exercises_every_strategy() -> None:
    """The look-ahead checks above would be vacuous if a strategy never fired on their data."""
    fired = {name: 0 for name in registered_strategies()}
    for load in DATASETS.values():
        enriched = enrich(load())
        for name, strategy in registered_strategies().items():
            fired[name] += int((strategy.evaluate(enriched)["direction"] != 0).sum())
    assert all(count > 0 for count in fired.values()), fired


# === 3. hand-built series with known answers ===============================================
def frame_of(
    high: np.ndarray, low: np.ndarray, open_: np.ndarray | None = None, close: np.ndarray | None = None
) -> pd.DataFrame:
    mid = (high + low) / 2
    index = pd.date_range("2025-01-01", periods=len(high), freq="1h", tz="UTC", name="time")
    return pd.DataFrame(
        {
            "open": mid if open_ is None else open_,
            "high": high,
            "low": low,
            "close": mid if close is None else close,
            "volume": 1.0,
        },
        index=index,
    )


def triangle(n: int, period: int = 8) -> np.ndarray:
    half = period // 2
    phase = np.arange(n) % period
    return np.where(phase <= half, phase, period - phase).astype(float)  # 0,1,2,3,4,3,2,1,0,...


@pytest.mark.parametrize("width", (2, 3, 4))
def test_zigzag_pivots(width: int) -> None:
    wave = triangle(41)  # peaks (4) at rows 4, 12, ..., 36; troughs (0) at 0, 8, ..., 40
    pivots = swing_pivots(pd.Series(wave + 1), pd.Series(wave - 1), width)
    assert [(p.position, p.kind, p.price) for p in pivots] == [
        (4, "high", 5.0),
        (8, "low", -1.0),
        (12, "high", 5.0),
        (16, "low", -1.0),
        (20, "high", 5.0),
        (24, "low", -1.0),
        (28, "high", 5.0),
        (32, "low", -1.0),
        (36, "high", 5.0),
    ]  # row 0 and row 40 lack neighbours on one side
    # a flat top (two equal highs) is no pivot: "strictly above" its neighbours
    flat = wave.copy()
    flat[13] = flat[12]
    positions = [p.position for p in swing_pivots(pd.Series(flat + 1), pd.Series(flat - 1), width)]
    assert 12 not in positions and 13 not in positions and 20 in positions


def staircase(up: bool, legs: int = 12, rise: float = 3.0, fall: float = 2.0) -> pd.DataFrame:
    """Legs of 4 candles: 4 steps of +rise then 4 of -fall (mirrored when not up): HH/HL or LH/LL."""
    steps = np.tile(np.r_[np.full(4, rise), np.full(4, -fall)], legs)
    mid = 100 + np.cumsum(steps) * (1 if up else -1)
    return frame_of(mid + 0.5, mid - 0.5)


def test_staircase_up_is_bullish_with_higher_highs_and_lows() -> None:
    candles = staircase(up=True)
    result = describe(IndicatorFrame("1h", enrich(candles)))
    assert result.bias == "BULLISH"
    # pivots alternate high (rows 3, 11, ..., 91) and low (rows 7, ..., 87); the last one is a high
    assert result.sequence == ["HL", "HH"] * 3
    pivots = swing_pivots(candles["high"], candles["low"])
    # peaks every 8 candles at rows 3, 11, ...; each 4 * (3 - 2) = 4 above the previous
    highs = [p for p in pivots if p.kind == "high"]
    assert [p.position for p in highs[:3]] == [3, 11, 19]
    assert set(np.diff([p.price for p in highs]).tolist()) == {4.0}
    assert result.last_swing_high == highs[-1].price
    assert result.last_swing_low == [p for p in pivots if p.kind == "low"][-1].price


def test_staircase_down_is_bearish_with_lower_highs_and_lows() -> None:
    candles = staircase(up=False)
    result = describe(IndicatorFrame("1h", enrich(candles)))
    assert result.bias == "BEARISH"
    assert result.sequence == ["LH", "LL"] * 3  # mirrored: lows at rows 3, ..., 91, highs at 7, ..., 87
    labels = label_sequence(swing_pivots(candles["high"], candles["low"]))
    assert len(labels) > 15 and set(labels) == {"LH", "LL"}


def test_flat_zigzag_is_neutral() -> None:
    wave = 100 + triangle(81)  # every swing high 104.5, every swing low 99.5: no direction at all
    assert describe(IndicatorFrame("1h", enrich(frame_of(wave + 0.5, wave - 0.5)))).bias == "NEUTRAL"


def range_with_wick(wick_row: int | None) -> pd.DataFrame:
    """Bodies oscillate between 100 and 110: every swing's body tops at 110.0, bottoms at 100.0.

    Bodies are 2 wide around a triangle 101..109 (period 16), wicks 0.3 beyond the body.
    """
    wave = 101 + triangle(100, period=16)  # 101..109, peaks at rows 8, 24, ...
    rising = np.diff(wave, append=wave[-1]) >= 0
    body_low, body_high = wave - 1, wave + 1
    open_ = np.where(rising, body_low, body_high)
    close = np.where(rising, body_high, body_low)
    high, low = body_high + 0.3, body_low - 0.3
    if wick_row is not None:
        high[wick_row] = 150.0
    return frame_of(high, low, open_, close)


def test_bodies_stopping_at_one_price_make_a_level_and_a_wick_does_not() -> None:
    plain = range_with_wick(None)
    wick_row = 40  # a body peak (110) whose wick reaches 150
    spiked = range_with_wick(wick_row)
    assert spiked["high"].max() == 150.0
    # the control: a wick-based pivot finder would report 150
    assert any(p.price == 150.0 for p in swing_pivots(spiked["high"], spiked["low"]))
    bodies = plain[["open", "close"]]
    peaks = [p for p in swing_pivots(bodies.max(axis=1), bodies.min(axis=1)) if p.kind == "high"]
    assert len(peaks) >= 5 and {p.price for p in peaks} == {110.0}
    for candles in (plain, spiked):
        frame = enrich(candles)
        levels = body_levels(IndicatorFrame("1h", frame))
        close = float(frame["close"].iloc[-1])
        assert 100.0 < close < 110.0
        resistance = [lvl for lvl in levels if lvl.price == pytest.approx(110.0)]
        support = [lvl for lvl in levels if lvl.price == pytest.approx(100.0)]
        assert len(resistance) == 1 and resistance[0].kind == "resistance"
        assert len(support) == 1 and support[0].kind == "support"
        assert math.floor(resistance[0].strength) == len(peaks)  # strength = touches + recency in [0, 1)
        assert all(lvl.price <= 110.0 + 1e-9 for lvl in levels), [lvl.price for lvl in levels]
