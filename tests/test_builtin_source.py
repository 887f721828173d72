"""Properties of the built-in, offline market-data source (tools/market_data/builtin.py)."""

from __future__ import annotations

import math
import time
import warnings
from datetime import UTC, datetime, timedelta
from functools import cache

import numpy as np
import pandas as pd
import pytest

import tools.market_data.builtin as builtin
from tools.market_data.builtin import SCENARIOS, BuiltinSource
from tools.timeframes import period

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pandas-ta's import-time deprecation noise
    import pandas_ta as ta

TFS = ("5m", "15m", "1h", "4h", "1d", "1w")
UNTILS = (
    datetime(2026, 11, 20, 13, 37, tzinfo=UTC),
    datetime(2025, 3, 3, 0, 0, tzinfo=UTC),  # exactly a Monday 00:00: every timeframe closes here
    datetime(2024, 7, 17, 22, 59, 41, tzinfo=UTC),
    datetime(2026, 11, 24, 4, 28, tzinfo=UTC),  # BTC/USDT's first uptrend tail sat at 1h ADX 24.8 here
)
SYMBOLS = ("BTC/USDT", "ETH/USDT", *(f"SYM{i}/USDT" for i in range(30)))
KINDS = (None, *SCENARIOS)


@cache
def frame(kind: str | None, symbol: str, tf: str, until: datetime, limit: int = 300) -> pd.DataFrame:
    """Memoised so the many checks over the same market do not pay for it twice."""
    return BuiltinSource(kind).candles(symbol, tf, until=until, limit=limit)


def last(series: pd.Series) -> float:
    return float(series.iloc[-1])


def clear_caches() -> None:
    """What a fresh process would see: no root, block or scenario cached."""
    builtin._NATURAL.clear()
    builtin._SCENARIO.clear()


# --- API ---------------------------------------------------------------------------


def test_unknown_scenario_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError) as err:
        BuiltinSource("sideways")
    for name in SCENARIOS:
        assert name in str(err.value)
    assert BuiltinSource().name == "builtin"


def test_unknown_timeframe_names_the_supported_ones() -> None:
    with pytest.raises(ValueError) as err:
        BuiltinSource().candles("BTC/USDT", "2h", until=UNTILS[0])
    for tf in TFS:
        assert tf in str(err.value)


def test_history_before_genesis_is_refused() -> None:
    with pytest.raises(ValueError):
        BuiltinSource().candles("BTC/USDT", "1w", until=datetime(2001, 1, 1, tzinfo=UTC), limit=300)
    with pytest.raises(ValueError):
        BuiltinSource().candles("BTC/USDT", "1h", until=UNTILS[0], limit=0)


@pytest.mark.parametrize("kind", KINDS)
def test_frame_shape_and_only_closed_candles(kind: str | None) -> None:
    for until in (*UNTILS, datetime(2026, 1, 1, 4, 0, tzinfo=UTC)):
        for tf in (*TFS, "1m", "30m"):
            df = BuiltinSource(kind).candles("ETH/USDT", tf, until=until, limit=123)
            assert list(df.columns) == ["open", "high", "low", "close", "volume"]
            assert all(dtype == np.float64 for dtype in df.dtypes)
            assert isinstance(df.index, pd.DatetimeIndex) and df.index.name == "time"
            assert str(df.index.tz) == "UTC"
            assert len(df) == 123 and df.index.is_monotonic_increasing and df.index.is_unique
            step = period(tf)
            assert (np.diff(df.index.asi8) == step.total_seconds() * 1e9).all()  # no gaps
            # newest candle is closed at `until`, and it is the newest one that is
            assert df.index[-1] + step <= until < df.index[-1] + 2 * step


async def test_fetch_candles_is_candles() -> None:
    src = BuiltinSource("range")
    got = await src.fetch_candles("SOL/USDT", "1h", until=UNTILS[0], limit=50)
    pd.testing.assert_frame_equal(got, src.candles("SOL/USDT", "1h", until=UNTILS[0], limit=50))


# --- 1. deterministic --------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic_bit_for_bit(kind: str | None) -> None:
    first = {
        (symbol, tf): BuiltinSource(kind).candles(symbol, tf, until=UNTILS[0])
        for symbol in ("BTC/USDT", "SYM1/USDT")
        for tf in TFS
    }
    clear_caches()
    for (symbol, tf), df in first.items():
        again = BuiltinSource(kind).candles(symbol, tf, until=UNTILS[0])  # fresh instance, cold caches
        pd.testing.assert_frame_equal(df, again, check_exact=True)
        assert df.to_numpy().tobytes() == again.to_numpy().tobytes()
        pd.testing.assert_frame_equal(df, BuiltinSource(kind).candles(symbol, tf, until=UNTILS[0]), check_exact=True)
    for tf in TFS:  # different symbols, different markets
        a, b = first[("BTC/USDT", tf)], BuiltinSource(kind).candles("BTC/USDC", tf, until=UNTILS[0])
        assert not np.allclose(a["close"] / a["close"].iloc[0], b["close"] / b["close"].iloc[0])


def test_symbol_price_levels() -> None:
    for until in UNTILS:
        btc, eth = (last(frame(None, s, "1d", until)["close"]) for s in ("BTC/USDT", "ETH/USDT"))
        assert 10_000 <= btc <= 200_000
        assert 300 <= eth <= 20_000
        others = [last(frame(None, s, "1d", until)["close"]) for s in SYMBOLS[2:]]
        assert all(0.0005 <= p <= 5_000 for p in others)
        assert max(others) / min(others) > 100  # spread over orders of magnitude, not one level


# --- 2. valid candles --------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_candles_are_valid(kind: str | None) -> None:
    for until in UNTILS:
        for symbol in SYMBOLS[:8]:
            for tf in TFS:
                df = frame(kind, symbol, tf, until)
                values = df.to_numpy()
                assert np.isfinite(values).all(), (symbol, tf)
                assert (values[:, :4] > 0).all() and (df["volume"] > 0).all()
                assert (df["high"] >= df[["open", "close"]].max(axis=1)).all()
                assert (df["low"] <= df[["open", "close"]].min(axis=1)).all()


def test_volume_is_larger_on_big_moves() -> None:
    for tf in ("1h", "1d", "1w"):
        corr = []
        for symbol in SYMBOLS[:12]:
            df = frame(None, symbol, tf, UNTILS[0])
            move = np.log(df["high"] / df["low"]).rank()
            corr.append(move.corr(df["volume"].rank()))
        assert np.median(corr) > 0.3, (tf, corr)


# --- 3. consistent across timeframes ---------------------------------------------------


def parent_open(index: pd.DatetimeIndex, tf: str) -> pd.DatetimeIndex:
    if tf == "1w":  # calendar weeks, Monday 00:00 UTC
        return index.normalize() - pd.to_timedelta(index.day_of_week, unit="D")
    return index.floor(period(tf))


def check_aggregation(child: pd.DataFrame, parent: pd.DataFrame, parent_tf: str, per: int) -> int:
    """Complete groups of children rebuild their parent; returns how many were compared."""
    groups = child.groupby(parent_open(child.index, parent_tf))
    agg = groups.agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
        n=("open", "size"),
    )
    agg = agg[agg["n"] == per].drop(columns="n")
    both = agg.index.intersection(parent.index)
    got, want = agg.loc[both], parent.loc[both]
    assert np.allclose(got.to_numpy(), want.to_numpy(), rtol=1e-9, atol=0), parent_tf
    # prices are not just close: the parent is made of its children, so they are identical
    assert (got[["open", "high", "low", "close"]].to_numpy() == want[["open", "high", "low", "close"]].to_numpy()).all()
    return len(both)


PAIRS = (  # (child, parent, children per parent)
    ("5m", "15m", 3),
    ("5m", "1h", 12),
    ("5m", "4h", 48),
    ("5m", "1d", 288),
    ("15m", "1h", 4),
    ("15m", "30m", 2),
    ("1m", "5m", 5),
    ("1h", "4h", 4),
    ("4h", "1d", 6),
    ("1h", "1d", 24),
    ("1d", "1w", 7),
)


@pytest.mark.parametrize("kind", KINDS)
def test_consistent_across_timeframes(kind: str | None) -> None:
    src = BuiltinSource(kind)
    for until in UNTILS:
        for symbol in ("BTC/USDT", "SYM17/USDT"):
            for child_tf, parent_tf, per in PAIRS:
                # windows long enough to include a scenario's switch to its 5m-drawn final weeks
                limit = min(per * 30, 4000) if child_tf != "1d" else 300
                child = src.candles(symbol, child_tf, until=until, limit=limit)
                parent = src.candles(symbol, parent_tf, until=until, limit=max(limit // per, 5))
                assert check_aggregation(child, parent, parent_tf, per) >= min(limit // per - 2, 13)


@pytest.mark.parametrize("kind", KINDS)
def test_continuous_path(kind: str | None) -> None:
    for until in UNTILS:
        for tf in (*TFS, "1m"):
            df = BuiltinSource(kind).candles("SYM5/USDT", tf, until=until, limit=1000)
            assert (df["open"].to_numpy()[1:] == df["close"].to_numpy()[:-1]).all(), tf


# --- 4. natural markets never rewrite history ------------------------------------------


def test_natural_candles_do_not_depend_on_until() -> None:
    t1 = datetime(2026, 3, 11, 9, 23, tzinfo=UTC)
    for t2 in (t1 + timedelta(minutes=5), t1 + timedelta(days=3, minutes=17), t1 + timedelta(weeks=30)):
        for symbol in ("BTC/USDT", "SYM8/USDT"):
            for tf in (*TFS, "1m", "30m"):
                early = BuiltinSource().candles(symbol, tf, until=t1, limit=500)
                clear_caches()  # a later process, asked later
                late = BuiltinSource().candles(symbol, tf, until=t2, limit=3000 if tf != "1w" else 600)
                both = early.index.intersection(late.index)
                assert len(both) >= min(500, len(early)) - (t2 - t1) // period(tf), (tf, t2)
                pd.testing.assert_frame_equal(early.loc[both], late.loc[both], check_exact=True)


# --- 5. cheap ---------------------------------------------------------------------------


def test_cost_per_symbol(capsys: pytest.CaptureFixture[str]) -> None:
    src = BuiltinSource()
    until = UNTILS[0]

    def all_timeframes(symbol: str, at: datetime) -> float:
        start = time.perf_counter()
        for tf in TFS:
            src.candles(symbol, tf, until=at, limit=300)
        return (time.perf_counter() - start) * 1000

    all_timeframes("WARMUP/USDT", until)
    cold = [all_timeframes(f"COLD{i}/USDT", until) for i in range(10)]
    warm = [all_timeframes(f"COLD{i}/USDT", until) for i in range(10)]
    step = [all_timeframes(f"COLD{i}/USDT", until + timedelta(minutes=5)) for i in range(10)]
    scen = BuiltinSource("uptrend")
    start = time.perf_counter()
    for tf in TFS:
        scen.candles("COLD1/USDT", tf, until=until, limit=300)
    first_scenario = (time.perf_counter() - start) * 1000
    with capsys.disabled():
        print(
            f"\nbuiltin, 6 timeframes x 300 candles per symbol: new symbol {np.median(cold):.1f} ms, "
            f"same call again {np.median(warm):.1f} ms, clock +5 min {np.median(step):.1f} ms, "
            f"first scenario call {first_scenario:.1f} ms"
        )


# --- 6. scenario shapes --------------------------------------------------------------


def scenario_cases() -> list[tuple[str, datetime]]:
    return [(symbol, until) for until in UNTILS for symbol in SYMBOLS]


def ema(series: pd.Series, n: int) -> float:
    return last(ta.ema(series, n))


@pytest.mark.parametrize("kind,sign", [("uptrend", 1.0), ("downtrend", -1.0)])
def test_trend_scenarios(kind: str, sign: float) -> None:
    soft = []
    for symbol, until in scenario_cases():
        f = {tf: frame(kind, symbol, tf, until) for tf in TFS}
        for tf in ("15m", "1h", "4h", "1d"):
            close = f[tf]["close"]
            assert sign * (last(close) - ema(close, 50)) > 0, (symbol, until, tf)
            assert sign * (ema(close, 20) - ema(close, 50)) > 0, (symbol, until, tf)
        h1 = f["1h"]
        # above 25, where the faders (sfp, rsi_reversion) stand aside and cannot contradict the trend
        assert last(ta.adx(h1["high"], h1["low"], h1["close"], length=14)["ADX_14"]) > 25, (symbol, until)
        assert sign * (last(f["1w"]["close"]) - ema(f["1w"]["close"], 20)) > 0, (symbol, until)
        soft.append(sign * (last(f["5m"]["close"]) - ema(f["5m"]["close"], 50)) > 0)
    assert np.mean(soft) >= 0.8


def test_range_scenario() -> None:
    for symbol, until in scenario_cases():
        for tf in ("1h", "4h"):
            d = frame("range", symbol, tf, until)
            adx = last(ta.adx(d["high"], d["low"], d["close"], length=14)["ADX_14"])
            atr = last(ta.atr(d["high"], d["low"], d["close"], length=14))
            rsi = last(ta.rsi(d["close"], length=14))
            assert adx < 25, (symbol, until, tf, adx)
            assert abs(last(d["close"]) - last(ta.sma(d["close"], 50))) < atr, (symbol, until, tf)
            assert 40 <= rsi <= 60, (symbol, until, tf, rsi)
        rsi15 = last(ta.rsi(frame("range", symbol, "15m", until)["close"], length=14))
        assert 35 <= rsi15 <= 65, (symbol, until, rsi15)
        daily = frame("range", symbol, "1d", until)["close"]
        assert abs(ema(daily, 20) / ema(daily, 50) - 1) < 0.03, (symbol, until)


def test_volatile_scenario_moves_more_than_range() -> None:
    def atr_pct(kind: str, symbol: str, until: datetime) -> float:
        d = frame(kind, symbol, "1h", until)
        return float((ta.atr(d["high"], d["low"], d["close"], length=14) / d["close"]).median())

    for symbol, until in scenario_cases():
        assert atr_pct("volatile", symbol, until) >= 2.5 * atr_pct("range", symbol, until), (symbol, until)


def test_crash_scenario() -> None:
    for symbol, until in scenario_cases():
        h1 = frame("crash", symbol, "1h", until)
        week_high = h1["high"].iloc[-7 * 24 :].max()
        assert last(h1["close"]) < 0.8 * week_high, (symbol, until)
        for tf in ("1h", "4h", "1d"):
            close = frame("crash", symbol, tf, until)["close"]
            assert last(close) < ema(close, 20), (symbol, until, tf)


def test_scenarios_differ_from_the_natural_market() -> None:
    natural = frame(None, "SYM2/USDT", "1h", UNTILS[0])
    for kind in SCENARIOS:
        assert not natural.equals(frame(kind, "SYM2/USDT", "1h", UNTILS[0]))
    assert not math.isclose(last(frame("uptrend", "SYM2/USDT", "1d", UNTILS[0])["close"]), last(natural["close"]))
