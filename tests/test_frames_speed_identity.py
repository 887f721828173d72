"""The frame and data-quality fast paths give exactly what the straightforward code they replace gives.

FrameCache builds clean candles' indicator frame straight from their array (no float copy, no normalize,
no dtype query); `inspect` proves a sound block with a few reductions, names its checks as it makes them
and reads times from the index's integers; `summarize` reads the float block. Each is compared with the
plain computation on builtin candles and on the inputs that take the other paths.
"""

from __future__ import annotations

import asyncio
import warnings
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

import tools.frames as frames_module
from nodes.market_data import summarize
from state.sections import CandleSummary, Check
from tools.frames import FrameCache, IndicatorFrame
from tools.indicators import enrich
from tools.market_data.base import OHLCV_COLUMNS, MarketDataError, empty_candles
from tools.market_data.builtin import SCENARIOS, BuiltinSource
from tools.quality import _gaps, _price_faults, inspect, normalize, open_time
from tools.timeframes import as_utc, period

CLOCK = datetime(2026, 11, 20, 13, 37, tzinfo=UTC)
TIMEFRAMES = ["5m", "15m", "1h", "4h", "1d", "1w"]


class Canned:
    """A source answering one prepared frame (a fresh shallow copy, as a source hands out new frames)."""

    name = "canned"

    def __init__(self, frame: object) -> None:
        self.frame = frame

    async def fetch_candles(self, symbol: str, timeframe: str, *, until: datetime, limit: int = 300) -> object:
        return self.frame.copy(deep=False) if isinstance(self.frame, pd.DataFrame) else self.frame


def outcome(call) -> tuple[str, object]:
    try:
        return "ok", call()
    except Exception as error:  # the same error, type and words, is part of the identity
        return "error", (type(error), str(error))


def warned(call) -> tuple[tuple[str, object], list[str]]:
    """outcome(call) and the warnings it gave: a fast path must not warn where the plain code did not."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = outcome(call)
    return result, [f"{w.category.__name__}: {w.message}" for w in caught]


def fast_frame(raw: object) -> IndicatorFrame:
    return asyncio.run(FrameCache(Canned(raw), source_key="t", limit=300).get("X/USDT", "1h", CLOCK))


def plain_frame(raw: pd.DataFrame) -> IndicatorFrame:
    """FrameCache's load as it was: checked columns, a float copy, normalize, enrich."""
    missing = [c for c in OHLCV_COLUMNS if c not in raw.columns]
    if missing:
        raise MarketDataError(f"canned returned candles without {missing}")
    ordered = raw if raw.columns.tolist() == OHLCV_COLUMNS else raw[OHLCV_COLUMNS]
    candles, repairs = normalize(ordered.astype(float))
    return IndicatorFrame(timeframe="1h", frame=enrich(candles), repairs=list(raw.attrs.get("repairs", [])) + repairs)


def assert_same_frame(got: IndicatorFrame, expected: IndicatorFrame) -> None:
    a, b = got.frame, expected.frame
    assert a.columns.tolist() == b.columns.tolist()
    assert a.dtypes.tolist() == b.dtypes.tolist()
    assert a.index.equals(b.index) and a.index.dtype == b.index.dtype and a.index.name == b.index.name
    assert a.to_numpy().tobytes() == b.to_numpy().tobytes()
    assert a.attrs == b.attrs and got.repairs == expected.repairs and got.timeframe == expected.timeframe


def check_fast_against_plain(raw: object) -> None:
    got, got_warnings = warned(lambda: fast_frame(raw))
    expected, expected_warnings = warned(lambda: plain_frame(raw))
    assert got[0] == expected[0], (got, expected)
    assert got_warnings == expected_warnings
    if got[0] == "ok":
        assert_same_frame(got[1], expected[1])
    else:
        expected_type, words = expected[1]
        # FrameCache turns any source-side failure into a MarketDataError; the loading code itself raises as before.
        assert got[1] == (expected_type, words)


def builtin(symbol: str, timeframe: str, scenario: str | None = None, limit: int = 300) -> pd.DataFrame:
    return BuiltinSource(scenario).candles(symbol, timeframe, until=CLOCK, limit=limit)


def random_candles(n: int, seed: int, *, unit: str = "ns", tz: object = UTC, freq: str = "h") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    open_ = np.concatenate((close[:1], close[:-1]))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, n))
    index = pd.date_range("2026-11-01", periods=n, freq=freq, tz=tz, name="time").as_unit(unit)
    values = {"open": open_, "high": high, "low": low, "close": close, "volume": rng.uniform(0, 9, n)}
    return pd.DataFrame(values, index=index)


def broken(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Candles with a few of every fault inspect counts (and normalize repairs), chosen at random."""
    rng = np.random.default_rng(seed)
    frame = frame.copy()
    n = len(frame)
    for _ in range(int(rng.integers(1, 4))):
        row, column = int(rng.integers(0, n)), str(rng.choice(OHLCV_COLUMNS))
        fault = int(rng.integers(0, 7))
        value = frame.iloc[row, frame.columns.get_loc(column)]
        frame.iloc[row, frame.columns.get_loc(column)] = [np.nan, np.inf, -np.inf, 0.0, -value, value * 1.5, value * 0.5][fault]
    return frame


# ---------------------------------------------------------------- FrameCache


@pytest.mark.parametrize("scenario", [None, *SCENARIOS])
def test_builtin_frames_match_the_plain_load(scenario: str | None) -> None:
    for symbol in ("BTC/USDT", "ETH/USDT", "DOGE/USDT", "XRP/BTC"):
        for timeframe in TIMEFRAMES:
            raw = builtin(symbol, timeframe, scenario)
            assert_same_frame(fast_frame(raw), plain_frame(raw))


def test_short_histories_match_the_plain_load() -> None:
    for limit in (1, 2, 5, 13, 14, 15, 19, 20, 21, 27, 28, 29, 49, 50, 51, 100):
        check_fast_against_plain(builtin("SOL/USDT", "1h", limit=limit))


def test_clean_candles_skip_normalize(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path is taken for a source's usual answer (without it this file would compare the plain path with itself)."""

    def refuse(candles: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
        raise AssertionError("normalize called on clean candles")

    monkeypatch.setattr(frames_module, "normalize", refuse)
    fast_frame(builtin("BTC/USDT", "1h"))
    with pytest.raises(AssertionError, match="normalize called"):
        fast_frame(builtin("BTC/USDT", "1h").iloc[::-1])


def odd_inputs() -> list[object]:
    base = builtin("ADA/USDT", "15m")
    flat = base.copy()
    flat[:] = 1.0
    zeros = base.copy()
    zeros[["open", "high", "low", "close"]] = 0.0
    nans = broken(base, 3)
    nans.iloc[40:45, 3] = np.nan
    infs = base.copy()
    infs.iloc[7, 1] = np.inf
    int_volume = base.assign(volume=np.arange(len(base), dtype=np.int64))
    float32 = base.astype(np.float32)
    with_attrs = base.copy()
    with_attrs.attrs = {"repairs": ["dropped 2 duplicate candles"], "source": {"nested": [1, 2]}}
    duplicated = pd.concat([base.iloc[:150], base.iloc[140:]])
    sorted_duplicates = duplicated.sort_index(kind="stable")  # monotonic, yet not unique
    nat = base.copy()
    nat.index = pd.DatetimeIndex([pd.NaT, *base.index[1:]], name="time")
    strings = base.astype(object)
    strings.iloc[3, 0] = "abc"
    numeric_strings = base.astype(str)
    huge = base * 1e300
    return [
        flat, zeros, nans, infs, int_volume, float32, with_attrs, duplicated, sorted_duplicates, nat, strings, numeric_strings, huge,
        base.iloc[::-1], base.iloc[[0, 2, 1, *range(3, 300)]],
        base[["close", "open", "high", "low", "volume"]], base.assign(extra=1.0), base.assign(rsi=5.0),
        base.drop(columns="volume"), base.rename(columns={"open": "Open"}),
        base.iloc[:0], empty_candles(), pd.DataFrame(columns=OHLCV_COLUMNS),
        base.tz_convert("Europe/Berlin"), base.tz_localize(None), base.set_axis(base.index.as_unit("s")),
        base.reset_index(drop=True), None,
    ]


@pytest.mark.parametrize("position", range(len(odd_inputs())))
def test_odd_candles_match_the_plain_load(position: int) -> None:
    raw = odd_inputs()[position]
    if raw is None:  # a source answering nothing: the same AttributeError as before
        assert outcome(lambda: fast_frame(raw))[1][0] is AttributeError
        return
    check_fast_against_plain(raw)


# ---------------------------------------------------------------- normalize


def test_normalize_matches_duplicated_any() -> None:
    base = random_candles(50, 0)
    cases = [base, base.iloc[::-1], pd.concat([base, base.iloc[10:20]]), pd.concat([base.iloc[:5], base.iloc[:5]]).sort_index()]
    nat = base.copy()
    nat.index = pd.DatetimeIndex([pd.NaT, pd.NaT, *base.index[2:]], name="time")
    cases += [nat, base.iloc[:0], base.iloc[:1]]
    for candles in cases:
        frame, repairs = normalize(candles)
        expected, expected_repairs = candles, []
        if not expected.index.is_monotonic_increasing:
            expected = expected.sort_index()
            expected_repairs.append("sorted out-of-order candles")
        duplicated = expected.index.duplicated(keep="last")
        if duplicated.any():
            expected = expected[~duplicated]
            expected_repairs.append(f"dropped {int(duplicated.sum())} duplicate candles")
        pd.testing.assert_frame_equal(frame, expected, check_exact=True)
        assert repairs == expected_repairs


# ---------------------------------------------------------------- inspect


def plain_inspect(candles: pd.DataFrame, timeframe: str, clock: datetime, min_candles: int, prefix: str) -> list[Check]:
    """inspect as it was, named afterwards as data_quality named it."""
    o, h, l, c, volume = (candles[name].to_numpy(dtype=float) for name in ("open", "high", "low", "close", "volume"))
    checks = [Check(name="enough_candles", passed=len(candles) >= min_candles, detail=f"{len(candles)} of {min_candles} needed")]
    if len(candles):
        bad_numbers, non_positive, inverted, outside = _price_faults(o, h, l, c, volume)
        checks.append(Check(name="finite_values", passed=bad_numbers == 0, detail=f"{bad_numbers} candles with NaN/inf"))
        checks.append(Check(name="positive_prices", passed=non_positive == 0, detail=f"{non_positive} candles"))
        checks.append(Check(name="high_above_low", passed=inverted == 0, detail=f"{inverted} candles with high < low"))
        checks.append(Check(name="open_close_in_range", passed=outside == 0, detail=f"{outside} candles"))
        step = period(timeframe)
        gaps, largest = _gaps(candles.index, step)
        checks.append(Check(name="gaps", passed=True, detail=f"{gaps} gaps, largest {largest}"))
        age = as_utc(clock) - candles.index[-1].to_pydatetime()
        checks.append(Check(name="fresh", passed=age <= 2 * step, detail=f"last candle opened {age} before the clock"))
    return [check.model_copy(update={"name": f"{prefix}{check.name}"}) for check in checks]


def check_inspect(candles: pd.DataFrame, timeframe: str = "1h", clock: datetime = CLOCK, min_candles: int = 100) -> None:
    for prefix in ("", f"{timeframe}."):
        got, got_warnings = warned(lambda: inspect(candles, timeframe, clock, min_candles=min_candles, prefix=prefix))
        expected, expected_warnings = warned(lambda: plain_inspect(candles, timeframe, clock, min_candles, prefix))
        assert got[0] == expected[0], (got, expected)
        assert got_warnings == expected_warnings
        if got[0] == "error":
            assert got[1] == expected[1]
            continue
        assert [c.model_dump() for c in got[1]] == [c.model_dump() for c in expected[1]]
        assert [c.model_fields_set for c in got[1]] == [c.model_fields_set for c in expected[1]]
        assert all(type(c.passed) is type(e.passed) for c, e in zip(got[1], expected[1], strict=True))


def test_inspect_matches_on_builtin_frames() -> None:
    for scenario in (None, *SCENARIOS):
        for timeframe in TIMEFRAMES:
            loaded = fast_frame(builtin("LINK/USDT", timeframe, scenario))
            for clock in (CLOCK, CLOCK + timedelta(days=3), CLOCK - timedelta(days=400)):
                check_inspect(loaded.frame, timeframe, clock)
                check_inspect(loaded.frame.iloc[:, :5], timeframe, clock)


@pytest.mark.parametrize("seed", range(40))
def test_inspect_matches_on_faulty_candles(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.choice([1, 2, 3, 30, 300]))
    candles = broken(random_candles(n, seed), seed) if seed % 4 else random_candles(n, seed)
    if seed % 3 == 0 and n > 3:  # gaps: candles missing
        candles = candles.drop(candles.index[rng.choice(n - 1, size=min(3, n - 2), replace=False) + 1])
    enriched = enrich(candles)
    for frame in (candles, enriched, enriched.iloc[:, ::-1], candles.assign(volume=np.arange(len(candles)))):
        check_inspect(frame, "1h", CLOCK, min_candles=int(rng.integers(0, 400)))


def test_inspect_matches_on_odd_indexes_and_layouts() -> None:
    base = random_candles(60, 1)
    nat = base.copy()
    nat.index = pd.DatetimeIndex([*base.index[:-1], pd.NaT], name="time")
    nat_first = base.copy()
    nat_first.index = pd.DatetimeIndex([pd.NaT, *base.index[1:]], name="time")
    odd_ns = base.set_axis(base.index + pd.Timedelta(nanoseconds=7))
    duplicated_names = base.copy()
    duplicated_names.columns = ["open", "high", "low", "close", "open"]
    duplicated_later = enrich(base)
    duplicated_later.columns = [*duplicated_later.columns[:-1], "close"]  # "open" found once, "close" twice
    frames = [
        base, nat_first, odd_ns, duplicated_names, duplicated_later, base.iloc[:0], base.iloc[:1], base.iloc[::-1],
        base.tz_convert("Asia/Kolkata"), base.tz_convert(ZoneInfo("UTC")), base.tz_convert(timezone(timedelta(hours=2))),
        base.tz_localize(None), base.reset_index(drop=True), base.drop(columns="low"), base.astype(np.float32),
        base[["volume", "open", "high", "low", "close"]], base.assign(mid=1.0)[["open", "high", "mid", "low", "close", "volume"]],
    ]
    frames += [random_candles(60, 2, unit=unit, freq=freq) for unit in ("s", "ms", "us", "ns") for freq in ("h", "90min")]
    for frame in frames:
        check_inspect(frame)
    check_inspect(nat)  # a NaT newest candle: pandas' own error or answer, unchanged
    check_inspect(base, "2h")  # an unknown timeframe raises as it did
    check_inspect(base.iloc[:0], "2h")  # ... but not before the empty-frame answer


# ---------------------------------------------------------------- open_time and summarize


def test_open_time_is_pandas_conversion() -> None:
    stamps = [0, 1, -1, 1_700_000_000_123_456_789, 1_700_000_000_123_456_000, -86_400_000_000_000, 2**62, -(2**62)]
    for unit in ("s", "ms", "us", "ns"):
        for tz in (UTC, "UTC", ZoneInfo("UTC"), "Europe/Berlin", None):
            for stamp in stamps:
                try:
                    index = pd.DatetimeIndex(np.array([stamp, pd.NaT.value], dtype=f"M8[{unit}]"), tz=None).tz_localize(tz)
                except (OverflowError, ValueError, NotImplementedError, pd.errors.OutOfBoundsDatetime):
                    continue
                for position in (0, -1):
                    with warnings.catch_warnings(record=True) as got_warnings:
                        warnings.simplefilter("always")
                        got = outcome(lambda: open_time(index, position))
                    with warnings.catch_warnings(record=True) as expected_warnings:
                        warnings.simplefilter("always")
                        expected = outcome(lambda: index[position].to_pydatetime())
                    assert got[0] == expected[0] and type(got[1]) is type(expected[1]), (unit, tz, stamp)
                    if got[0] == "ok" and expected[1] is not pd.NaT:
                        assert got[1] == expected[1] and got[1].tzinfo is expected[1].tzinfo
                    else:
                        assert got[1] == expected[1] or (got[1] is pd.NaT and expected[1] is pd.NaT)
                    assert [str(w.message) for w in got_warnings] == [str(w.message) for w in expected_warnings]


def test_summarize_matches_series_lookups() -> None:
    for scenario in (None, *SCENARIOS):
        for timeframe in TIMEFRAMES:
            loaded = fast_frame(builtin("AVAX/USDT", timeframe, scenario))
            frame = loaded.frame
            expected = CandleSummary(
                count=len(frame),
                first=frame.index[0].to_pydatetime(),
                last=frame.index[-1].to_pydatetime(),
                last_close=float(frame["close"].iloc[-1]),
            )
            got = summarize(loaded)
            assert got.model_dump() == expected.model_dump()
            assert got.first.tzinfo is expected.first.tzinfo and got.last.tzinfo is expected.last.tzinfo


# ---------------------------------------------------------------- column lookups


def test_ohlcv_order_check_is_the_list_comparison() -> None:
    from tools.frames import _in_ohlcv_order

    ohlcv = list(OHLCV_COLUMNS)
    cases = [
        ohlcv, ohlcv[::-1], ohlcv[:4], [*ohlcv, "extra"], ["open", "high", "low", "close", "open"], ["Open", *ohlcv[1:]],
        [0, 1, 2, 3, 4], [np.str_(c) for c in ohlcv], [b"open", b"high", b"low", b"close", b"volume"],
        pd.MultiIndex.from_tuples([(c, "x") for c in ohlcv]), pd.date_range("2026-01-01", periods=5), [],
    ]
    for labels in cases:
        for columns in (pd.Index(labels) if not isinstance(labels, pd.Index) else labels, pd.Index(labels, dtype=object)):
            assert _in_ohlcv_order(columns) == (columns.tolist() == ohlcv), labels
    assert _in_ohlcv_order(pd.CategoricalIndex(ohlcv))


def test_column_arrays_match_series_lookups() -> None:
    from tools.indicators import column_arrays

    enriched = fast_frame(builtin("BTC/USDT", "4h")).frame
    other = fast_frame(builtin("ETH/USDT", "1h")).frame  # the same column Index: answers remembered from the first
    duplicated = enriched.copy()
    duplicated.columns = [*enriched.columns[:-1], "close"]
    frames = [enriched, other, enriched.iloc[:, ::-1], enriched.assign(volume=1), duplicated, enriched.iloc[:0], enriched.astype(np.float32)]
    names_tried = [("close",), ("open", "high", "low", "close", "volume"), ("rsi", "atr", "close", "rsi"), ("close", "missing"), ("missing",)]
    for frame in frames * 2:
        for names in names_tried:
            got = outcome(lambda: column_arrays(frame, *names))
            expected = outcome(lambda: tuple(frame[name].to_numpy(dtype=float) for name in names))
            assert got[0] == expected[0], (names, got, expected)
            if got[0] == "ok":
                assert [a.tobytes() for a in got[1]] == [b.tobytes() for b in expected[1]]
            else:
                assert got[1] == expected[1]
