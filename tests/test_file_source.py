"""FileSource and resample against real files written to tmp_path; expected values are worked out by hand."""

from __future__ import annotations

import json
import math
import os
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tools.market_data.base import OHLCV_COLUMNS, MarketDataError, UnknownSymbol
from tools.market_data.files import FileSource
from tools.quality import inspect, normalize
from tools.resample import resample

H = timedelta(hours=1)
D = timedelta(days=1)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def ms(moment: datetime) -> int:
    return int(moment.timestamp()) * 1000


def frame(rows: list[tuple[datetime, float, float, float, float, float]]) -> pd.DataFrame:
    index = pd.DatetimeIndex([r[0] for r in rows], name="time").as_unit("ns")
    return pd.DataFrame([r[1:] for r in rows], columns=OHLCV_COLUMNS, index=index, dtype=np.float64)


def write_feather(path: Path, rows: list[tuple]) -> Path:
    table = pd.DataFrame(rows, columns=["date", *OHLCV_COLUMNS])
    table["date"] = pd.to_datetime(table["date"], utc=True)
    table.to_feather(path, compression="lz4")  # as freqtrade writes them
    return path


def write_json(path: Path, rows: list[tuple]) -> Path:
    path.write_text(json.dumps([[ms(r[0]), *r[1:]] for r in rows]))
    return path


def write_binance(path: Path, rows: list[tuple], *, header: bool, micro: bool, step: timedelta = H) -> Path:
    names = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore"
    lines = [names] if header else []
    for t, o, h, low, c, v in rows:
        scale = 1000 if micro else 1
        start, end = ms(t) * scale, (ms(t + step) - 1) * scale + (999 if micro else 0)
        lines.append(f"{start},{o:.8f},{h:.8f},{low:.8f},{c:.8f},{v:.8f},{end},{c * v:.8f},12,{v / 2:.8f},0.0,0")
    path.write_text("\n".join(lines) + "\n")
    return path


def hourly(start: datetime, hours: int, skip: tuple[int, ...] = ()) -> list[tuple]:
    """open=i, high=i+0.5, low=i-0.5, close=i+0.25, volume=i with i the hour of the day + 24 * day index."""
    out = []
    for k in range(hours):
        t = start + k * H
        i = float((t - at(2024, 1, 1)) // H)
        if t.hour not in skip:
            out.append((t, i, i + 0.5, i - 0.5, i + 0.25, i))
    return out


def assert_shape(candles: pd.DataFrame) -> None:
    assert list(candles.columns) == OHLCV_COLUMNS
    assert all(candles[c].dtype == np.float64 for c in OHLCV_COLUMNS)
    assert candles.index.name == "time" and str(candles.index.tz) == "UTC"


# --- each format reads back exactly --------------------------------------------------
ROWS = [
    (at(2024, 3, 1, 0), 61000.5, 61200.0, 60900.25, 61100.0, 12.5),
    (at(2024, 3, 1, 1), 61100.0, 61350.75, 61050.0, 61300.125, 7.0),
    (at(2024, 3, 1, 2), 61300.125, 61400.0, 61000.0, 61010.0, 0.001),
]


async def test_feather_reads_back_exactly(tmp_path: Path) -> None:
    write_feather(tmp_path / "BTC_USDT-1h.feather", ROWS)
    got = await FileSource(tmp_path).fetch_candles("BTC/USDT", "1h", until=at(2024, 3, 2), limit=10)
    assert_shape(got)
    pd.testing.assert_frame_equal(got, frame(ROWS), check_index_type=False)
    assert list(got.index) == [r[0] for r in ROWS]


async def test_json_reads_back_exactly(tmp_path: Path) -> None:
    write_json(tmp_path / "ETH_BTC-1h.json", ROWS)
    got = await FileSource(tmp_path).fetch_candles("ETH/BTC", "1h", until=at(2024, 3, 2), limit=10)
    assert_shape(got)
    pd.testing.assert_frame_equal(got, frame(ROWS), check_index_type=False)


async def test_binance_csvs_with_and_without_header_in_ms_and_us_are_concatenated(tmp_path: Path) -> None:
    dec = [(at(2024, 12, 31, 22), 1.0, 2.0, 0.5, 1.5, 10.0), (at(2024, 12, 31, 23), 1.5, 2.5, 1.0, 2.0, 11.0)]
    jan = [(at(2025, 1, 1, 0), 2.0, 3.0, 1.5, 2.5, 12.0), (at(2025, 1, 1, 1), 2.5, 3.5, 2.0, 3.0, 13.0)]
    folder = tmp_path / "spot" / "BTCUSDT"  # nested folders are searched too
    folder.mkdir(parents=True)
    write_binance(folder / "BTCUSDT-1h-2025-01-01.csv", jan, header=True, micro=True)  # 2025 spot: µs
    write_binance(folder / "BTCUSDT-1h-2024-12.csv", dec, header=False, micro=False)  # ms, no header
    src = FileSource(tmp_path)
    assert src.available() == {"BTC/USDT": ["1h"]}
    got = await src.fetch_since("BTC/USDT", "1h", since=at(2024, 1, 1), until=at(2025, 1, 2))
    assert_shape(got)
    pd.testing.assert_frame_equal(got, frame(dec + jan), check_index_type=False)


async def test_binance_zip_and_symbol_mapping(tmp_path: Path) -> None:
    csv = write_binance(tmp_path / "ETHBTC-1d-2024-02.csv", [(at(2024, 2, 1), 0.05, 0.06, 0.04, 0.055, 100.0)], header=False, micro=False)
    with zipfile.ZipFile(tmp_path / "ETHBTC-1d-2024-02.zip", "w") as archive:
        archive.write(csv, csv.name)
    csv.unlink()
    write_binance(tmp_path / "BTCFDUSD-1d-2024-02.csv", [(at(2024, 2, 1), 1.0, 1.0, 1.0, 1.0, 1.0)], header=False, micro=False)
    write_binance(tmp_path / "TUSDUSDT-1d-2024-02.csv", [(at(2024, 2, 1), 1.0, 1.0, 1.0, 1.0, 1.0)], header=False, micro=False)
    src = FileSource(tmp_path)
    assert set(src.available()) == {"ETH/BTC", "BTC/FDUSD", "TUSD/USDT"}
    got = await src.fetch_candles("ETH/BTC", "1d", until=at(2024, 3, 1))
    assert got["close"].tolist() == [0.055]
    # the exchange's own spelling finds the same market
    alias = await src.fetch_candles("ETHBTC", "1d", until=at(2024, 3, 1))
    pd.testing.assert_frame_equal(alias, got)


# --- only closed candles ------------------------------------------------------------------
async def test_only_candles_closed_at_until(tmp_path: Path) -> None:
    write_feather(tmp_path / "BTC_USDT-1h.feather", hourly(at(2024, 1, 1), 10))  # 00:00 .. 09:00
    src = FileSource(tmp_path)
    got = await src.fetch_candles("BTC/USDT", "1h", until=at(2024, 1, 1, 5), limit=300)
    assert got.index[-1] == at(2024, 1, 1, 4)  # the 04:00 candle closed at 05:00 exactly
    got = await src.fetch_candles("BTC/USDT", "1h", until=at(2024, 1, 1, 4, 59, 59), limit=300)
    assert got.index[-1] == at(2024, 1, 1, 3)
    got = await src.fetch_candles("BTC/USDT", "1h", until=at(2024, 1, 1, 8), limit=3)
    assert list(got.index) == [at(2024, 1, 1, h) for h in (5, 6, 7)]
    got = await src.fetch_since("BTC/USDT", "1h", since=at(2024, 1, 1, 2), until=at(2024, 1, 1, 6, 30))
    assert list(got.index) == [at(2024, 1, 1, h) for h in (2, 3, 4, 5)]
    assert (await src.fetch_candles("BTC/USDT", "1h", until=at(2024, 1, 1, 0, 59))).empty
    with pytest.raises(ValueError):
        await src.fetch_candles("BTC/USDT", "1h", until=at(2024, 1, 2), limit=0)


# --- resampling -----------------------------------------------------------------------------
def daily_from_wednesday() -> list[tuple]:
    """2024-01-03 (a Wednesday) .. 2024-01-22 (a Monday): day i has open 100+i, high 110+i, low 90+i,
    close 101+i, volume i+1; except a 500 high on Wed 10 Jan and a low of 1 on Wed 17 Jan."""
    rows = []
    for i in range(20):
        t = at(2024, 1, 3) + i * D
        high = 500.0 if t.day == 10 else 110.0 + i
        low = 1.0 if t.day == 17 else 90.0 + i
        rows.append((t, 100.0 + i, high, low, 101.0 + i, i + 1.0))
    return rows


# Week of Mon 8 Jan: days i=5..11; week of Mon 15 Jan: i=12..18. The week of 1 Jan starts on
# Wednesday in the data (partial) and the week of 22 Jan has only its Monday: both dropped.
WEEKS = [
    (at(2024, 1, 8), 105.0, 500.0, 95.0, 112.0, float(sum(range(6, 13)))),
    (at(2024, 1, 15), 112.0, 128.0, 1.0, 119.0, float(sum(range(13, 20)))),
]
# 1h candles 02:00..19:00 without 06:00: bucket 00 is partial, bucket 04 has a hole.
FOUR_HOURS = [
    (at(2024, 1, 1, 8), 8.0, 11.5, 7.5, 11.25, 8.0 + 9 + 10 + 11),
    (at(2024, 1, 1, 12), 12.0, 15.5, 11.5, 15.25, 12.0 + 13 + 14 + 15),
    (at(2024, 1, 1, 16), 16.0, 19.5, 15.5, 19.25, 16.0 + 17 + 18 + 19),
]


def test_weekly_from_daily_is_calendar_aligned_and_drops_partial_weeks() -> None:
    got = resample(frame(daily_from_wednesday()), "1d", "1w")
    assert_shape(got)
    assert [t.weekday() for t in got.index] == [0, 0]
    pd.testing.assert_frame_equal(got, frame(WEEKS), check_index_type=False)


def test_four_hours_from_hours_drops_buckets_with_a_hole() -> None:
    got = resample(frame(hourly(at(2024, 1, 1, 2), 18, skip=(6,))), "1h", "4h")
    pd.testing.assert_frame_equal(got, frame(FOUR_HOURS), check_index_type=False)


def test_resample_keeps_nan_and_refuses_duplicates_and_bad_ratios() -> None:
    rows = hourly(at(2024, 1, 1), 8)
    rows[3] = (rows[3][0], 3.0, 3.5, 2.5, math.nan, 3.0)  # last close of bucket 00 is NaN
    rows.append(rows[5])  # a duplicate inside bucket 04
    got = resample(frame(rows), "1h", "4h")
    assert list(got.index) == [at(2024, 1, 1)]
    assert math.isnan(got["close"].iloc[0]) and got["high"].iloc[0] == 3.5
    assert resample(frame([]), "1h", "4h").empty
    with pytest.raises(ValueError):
        resample(frame(rows), "4h", "1h")
    with pytest.raises(ValueError):
        resample(frame(rows), "1h", "30m")


def test_resample_ratios_that_divide() -> None:
    assert resample(frame([]), "4h", "1w").empty
    assert resample(frame([]), "15m", "1h").empty


async def test_missing_timeframe_is_resampled_transparently(tmp_path: Path) -> None:
    write_feather(tmp_path / "BTC_USDT-1h.feather", hourly(at(2024, 1, 1, 2), 18, skip=(6,)))
    write_json(tmp_path / "BTC_USDT-1d.json", daily_from_wednesday())
    src = FileSource(tmp_path)
    assert src.available() == {"BTC/USDT": ["1h", "1d"]}
    got = await src.fetch_candles("BTC/USDT", "4h", until=at(2024, 1, 1, 20))
    assert_shape(got)
    pd.testing.assert_frame_equal(got, frame(FOUR_HOURS), check_index_type=False)
    got = await src.fetch_candles("BTC/USDT", "4h", until=at(2024, 1, 1, 19, 59))
    assert got.index[-1] == at(2024, 1, 1, 12)  # the 16:00 bucket has not closed yet
    # 1w comes from 1d (the largest lower timeframe that divides it), not from 1h
    weekly = await src.fetch_since("BTC/USDT", "1w", since=at(2024, 1, 1), until=at(2024, 2, 1))
    pd.testing.assert_frame_equal(weekly, frame(WEEKS), check_index_type=False)
    assert (await src.fetch_candles("BTC/USDT", "1w", until=at(2024, 1, 21, 23))).index.tolist() == [at(2024, 1, 8)]


async def test_timeframe_that_cannot_be_built_names_what_exists(tmp_path: Path) -> None:
    write_json(tmp_path / "BTC_USDT-4h.json", [(at(2024, 1, 1), 1.0, 1.0, 1.0, 1.0, 1.0)])
    with pytest.raises(MarketDataError, match=r"no 1h data for BTC/USDT.*on disk: 4h"):
        await FileSource(tmp_path).fetch_candles("BTC/USDT", "1h", until=at(2024, 2, 1))


# --- errors ------------------------------------------------------------------------------
async def test_unknown_symbol_lists_close_matches(tmp_path: Path) -> None:
    for pair in ("BTC_USDT", "ETH_USDT", "DOGE_EUR"):
        write_json(tmp_path / f"{pair}-1h.json", [(at(2024, 1, 1), 1.0, 1.0, 1.0, 1.0, 1.0)])
    src = FileSource(tmp_path)
    with pytest.raises(UnknownSymbol, match=r"'BTC/USD'.*close matches: BTC/USDT") as caught:
        await src.fetch_candles("BTC/USD", "1h", until=at(2024, 2, 1))
    assert "DOGE/EUR" not in str(caught.value)
    with pytest.raises(UnknownSymbol):
        src.latest_close("XRP/JPY", "1h")


def test_missing_directory_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(MarketDataError, match=str(tmp_path / "nope")):
        FileSource(tmp_path / "nope")


# --- no silent repair ---------------------------------------------------------------------
async def test_dirty_file_is_returned_as_is_for_the_quality_gate(tmp_path: Path) -> None:
    rows = [
        (at(2024, 1, 1, 0), 10.0, 11.0, 9.0, 10.5, 1.0),
        (at(2024, 1, 1, 2), 10.5, 11.0, 10.0, 10.8, 1.0),  # out of order
        (at(2024, 1, 1, 1), 10.5, 11.0, 10.0, 10.5, 1.0),
        (at(2024, 1, 1, 1), 10.5, 11.0, 10.0, 10.5, 1.0),  # duplicate
        (at(2024, 1, 1, 3), 10.8, 11.2, 10.1, math.nan, 1.0),  # NaN close
        (at(2024, 1, 1, 4), 10.9, 10.0, 11.0, 10.5, 1.0),  # high < low
    ]
    write_feather(tmp_path / "BTC_USDT-1h.feather", rows)
    got = await FileSource(tmp_path).fetch_candles("BTC/USDT", "1h", until=at(2024, 1, 2), limit=300)
    pd.testing.assert_frame_equal(got, frame(rows), check_index_type=False)
    # ... and downstream the gate sees every problem
    candles, repairs = normalize(got)
    assert repairs == ["sorted out-of-order candles", "dropped 1 duplicate candles"]
    failed = {c.name for c in inspect(candles, "1h", at(2024, 1, 1, 5), min_candles=1) if not c.passed}
    assert failed == {"finite_values", "high_above_low", "open_close_in_range"}


# --- directory listing, clock, cache ------------------------------------------------------
async def test_available_lists_what_is_on_disk(tmp_path: Path) -> None:
    one = [(at(2024, 1, 1), 1.0, 1.0, 1.0, 1.0, 1.0)]
    write_feather(tmp_path / "BTC_USDT-5m.feather", one)
    write_json(tmp_path / "BTC_USDT-1d.json", one)
    write_feather(tmp_path / "BTC_USDT-1h.feather", one)
    (tmp_path / "futures").mkdir()
    write_feather(tmp_path / "futures" / "BTC_USDT_USDT-1h-futures.feather", [(at(2024, 1, 1), 9.0, 9.0, 9.0, 9.0, 9.0)])
    write_feather(tmp_path / "futures" / "BTC_USDT_USDT-1h-mark.feather", one)
    write_binance(tmp_path / "SOLUSDT-15m-2024-01.csv", one, header=False, micro=False, step=timedelta(minutes=15))
    (tmp_path / "notes.txt").write_text("not candles")
    (tmp_path / "SOLUSDT-15m-2024-01.csv.CHECKSUM").write_text("abc")
    src = FileSource(str(tmp_path))
    assert src.available() == {"BTC/USDT": ["5m", "1h", "1d"], "BTC/USDT:USDT": ["1h"], "SOL/USDT": ["15m"]}
    # the futures file never stands in for the spot market
    spot = await src.fetch_candles("BTC/USDT", "1h", until=at(2024, 1, 2))
    assert spot["close"].tolist() == [1.0]
    assert FileSource(tmp_path / "futures").available() == {"BTC/USDT:USDT": ["1h"]}


def test_latest_close(tmp_path: Path) -> None:
    write_feather(tmp_path / "BTC_USDT-1h.feather", hourly(at(2024, 1, 1, 2), 18, skip=(6,)))
    src = FileSource(tmp_path)
    assert src.latest_close("BTC/USDT", "1h") == at(2024, 1, 1, 20)
    assert src.latest_close("BTC/USDT", "4h") == at(2024, 1, 1, 20)
    assert src.latest_close("BTC/USDT", "1d") is None  # no complete day on disk
    write_json(tmp_path / "ETH_USDT-1h.json", [])
    assert src.latest_close("ETH/USDT", "1h") is None


async def test_files_are_read_once_and_reread_when_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tools.market_data import files

    path = write_feather(tmp_path / "BTC_USDT-1h.feather", hourly(at(2024, 1, 1), 4))
    reads: list[Path] = []
    real = files._READERS["feather"]
    monkeypatch.setitem(files._READERS, "feather", lambda p: reads.append(p) or real(p))
    src = FileSource(tmp_path)
    for _ in range(3):
        await src.fetch_candles("BTC/USDT", "1h", until=at(2024, 1, 2))
        await src.fetch_candles("BTC/USDT", "4h", until=at(2024, 1, 2))
    assert reads == [path]
    write_feather(path, hourly(at(2024, 1, 1), 8))
    stamp = path.stat().st_mtime_ns + 1_000_000_000
    os.utime(path, ns=(stamp, stamp))
    got = await src.fetch_candles("BTC/USDT", "4h", until=at(2024, 1, 2))
    assert len(reads) == 2 and len(got) == 2


async def test_unreadable_file_is_a_market_data_error(tmp_path: Path) -> None:
    (tmp_path / "BTC_USDT-1h.json").write_text("{not json")
    with pytest.raises(MarketDataError, match="BTC_USDT-1h.json"):
        await FileSource(tmp_path).fetch_candles("BTC/USDT", "1h", until=at(2024, 1, 2))
    assert await FileSource(tmp_path).market_info("BTC/USDT") is None
    (tmp_path / "BTC_USDT-1h.json").unlink()
    csv = write_binance(tmp_path / "BTCUSDT-1h-2024-01.csv", hourly(at(2024, 1, 1), 3), header=False, micro=False)
    csv.write_text(csv.read_text().replace(str(ms(at(2024, 1, 1, 1))), "soon", 1))
    with pytest.raises(MarketDataError, match="1 rows with an unreadable open time .* data row 2"):
        await FileSource(tmp_path).fetch_candles("BTC/USDT", "1h", until=at(2024, 1, 2))
