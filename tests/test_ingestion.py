"""The ingestion layer end to end: real files on disk, the real candle store (SQLite and Postgres),
the whole graph. Candle files are written by the tests in freqtrade's format, with prices taken from
the built-in deterministic source so the strategies have a real market to read.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from api.runs import Lifecycles, make_request
from state import Settings
from tools.market_data.builtin import BuiltinSource
from tools.market_data.files import FileSource
from tools.market_data.stored import StoredSource
from tools.storage import open_storage

END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
TIMEFRAMES = ["15m", "1h", "4h", "1d"]


def write_freqtrade(directory: Path, symbol: str, timeframe: str, candles: pd.DataFrame) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{symbol.replace('/', '_')}-{timeframe}.feather"
    table = candles.reset_index().rename(columns={"time": "date"})
    table.to_feather(path)
    return path


def market_files(directory: Path, *, scenario: str = "uptrend", symbol: str = "BTC/USDT", end: datetime = END) -> dict[str, pd.DataFrame]:
    """15m and 1h files; 4h and 1d are left for the source to resample (1d then has too little history)."""
    directory.mkdir(parents=True, exist_ok=True)
    source = BuiltinSource(scenario)
    written = {}
    for timeframe, limit in (("15m", 1200), ("1h", 480)):
        written[timeframe] = source.candles(symbol, timeframe, until=end, limit=limit)
        write_freqtrade(directory, symbol, timeframe, written[timeframe])
    return written


def files_request(settings: Settings, data_dir: Path, **overrides):
    fields = {"source": "files", "data_dir": str(data_dir), "timeframes": TIMEFRAMES, "decision_timeframe": "1h", **overrides}
    return make_request(settings, "BTC/USDT", **fields)


class SpySource:
    """The real file source, with every `fetch_since` call written down."""

    def __init__(self, inner: FileSource) -> None:
        self.inner, self.name, self.calls = inner, inner.name, []

    async def fetch_since(self, symbol, timeframe, *, since, until):
        self.calls.append((timeframe, since, until))
        return await self.inner.fetch_since(symbol, timeframe, since=since, until=until)


async def test_store_keeps_candles_immutable_and_reads_by_clock(backend_settings: Settings) -> None:
    candles = BuiltinSource().candles("ETH/USDT", "1h", until=END, limit=50)
    async with open_storage(backend_settings) as storage:
        store = storage.candles
        assert await store.insert("binance", "ETH/USDT", "1h", candles) == 50
        assert await store.insert("binance", "ETH/USDT", "1h", candles.iloc[-10:] * 2) == 0  # closed candles never change
        assert await store.bounds("binance", "ETH/USDT", "1h") == (candles.index[0].to_pydatetime(), candles.index[-1].to_pydatetime())
        back = await store.read("binance", "ETH/USDT", "1h", until=END, limit=1000)
        pd.testing.assert_frame_equal(back, candles, check_freq=False)
        # At a past clock only the candles closed by then exist.
        earlier = await store.read("binance", "ETH/USDT", "1h", until=END - timedelta(hours=10, minutes=30), limit=5)
        assert list(earlier.index) == list(candles.index[-16:-11])
        assert len(await store.read("kraken", "ETH/USDT", "1h", until=END, limit=5)) == 0


async def test_second_fetch_asks_only_for_newer_candles(backend_settings: Settings, tmp_path: Path) -> None:
    data = tmp_path / "data"
    full = BuiltinSource().candles("BTC/USDT", "1h", until=END + timedelta(hours=10), limit=310)
    write_freqtrade(data, "BTC/USDT", "1h", full.iloc[:-10])
    async with open_storage(backend_settings) as storage:
        spy = SpySource(FileSource(data))
        stored = StoredSource(spy, storage.candles, "binance")
        first = await stored.fetch_candles("BTC/USDT", "1h", until=END, limit=300)
        assert len(spy.calls) == 1 and spy.calls[0][1] == full.index[0].to_pydatetime()
        assert len(first) == 300 and first.index[-1] == full.index[-11]
        again = await stored.fetch_candles("BTC/USDT", "1h", until=END, limit=300)
        assert len(spy.calls) == 1  # nothing new had closed: nothing asked
        pd.testing.assert_frame_equal(again, first)
        write_freqtrade(data, "BTC/USDT", "1h", full)  # ten newer candles arrive
        later = await stored.fetch_candles("BTC/USDT", "1h", until=END + timedelta(hours=10), limit=300)
        assert spy.calls[-1][1] == full.index[-10].to_pydatetime()  # only what the store lacked
        assert later.index[-1] == full.index[-1]


async def test_replay_reads_the_candles_the_original_run_saw(backend_settings: Settings, tmp_path: Path) -> None:
    data = tmp_path / "data"
    market_files(data, end=END)
    async with open_storage(backend_settings) as storage:
        runs = Lifecycles(backend_settings, storage)
        original = await runs.start(files_request(backend_settings, data))
        assert original.decision.action == "BUY", original.decision.reason
        assert original.values["request"].as_of == END  # offline data: the clock is the data's
        # A crash arrives in the files after the run.
        crash = BuiltinSource("crash").candles("BTC/USDT", "15m", until=END + timedelta(days=2), limit=1400)
        crash_1h = BuiltinSource("crash").candles("BTC/USDT", "1h", until=END + timedelta(days=2), limit=530)
        write_freqtrade(data, "BTC/USDT", "15m", crash)
        write_freqtrade(data, "BTC/USDT", "1h", crash_1h)
        history = await runs.history(original.thread_id)
        after_sanity = next(h for h in reversed(history) if h.next == ["market_data"])
        replayed = await runs.replay(original.thread_id, after_sanity.checkpoint_id)
        fresh = await runs.start(files_request(backend_settings, data))
    assert replayed.values["market"].last_price == original.values["market"].last_price
    assert replayed.decision.action == original.decision.action
    assert fresh.values["request"].as_of == END + timedelta(days=2)
    assert fresh.values["market"].last_price != original.values["market"].last_price


async def run_files(settings: Settings, data: Path, **overrides):
    async with open_storage(settings) as storage:
        runs = Lifecycles(settings, storage)
        try:
            return await runs.start(files_request(settings, data, **overrides))
        finally:
            await runs.hub.aclose()


async def test_short_timeframe_is_dropped_with_its_reason_and_the_run_goes_on(make_settings, tmp_path: Path) -> None:
    market_files(tmp_path / "data")
    outcome = await run_files(make_settings(), tmp_path / "data")
    assert "market" in outcome.values, outcome.decision
    market = outcome.values["market"]
    assert "1d" in market.dropped and "indicators need 100" in market.dropped["1d"]
    assert set(market.timeframes) == {"15m", "1h", "4h"}
    assert outcome.decision.action == "BUY"


def spoil(frame: pd.DataFrame, column: str, position: int, value: float) -> pd.DataFrame:
    spoiled = frame.copy()
    spoiled.iloc[position, spoiled.columns.get_loc(column)] = value
    return spoiled


@pytest.mark.parametrize(
    "damage,check",
    [
        (lambda f: spoil(f, "close", -30, np.nan), "1h.finite_values"),
        (lambda f: spoil(f, "close", -30, np.inf), "1h.finite_values"),
        (lambda f: spoil(f, "low", -40, -5.0), "1h.positive_prices"),
        (lambda f: spoil(f, "high", -50, 1.0), "1h.high_above_low"),
        (lambda f: spoil(f, "open", -60, f["high"].iloc[-60] * 1.5), "1h.open_close_in_range"),
    ],
)
async def test_bad_candles_end_in_a_reasoned_hold(make_settings, tmp_path: Path, damage, check: str) -> None:
    written = market_files(tmp_path / "data")
    write_freqtrade(tmp_path / "data", "BTC/USDT", "1h", damage(written["1h"]))
    outcome = await run_files(make_settings(), tmp_path / "data")
    assert outcome.decision.action == "HOLD" and outcome.decision.stage == "data_quality"
    assert check in outcome.decision.reason
    assert "orders" not in outcome.values
    assert any(e.produced_by == "data_quality" and e.verdict == "HOLD" for e in outcome.values["audit"])


async def test_duplicates_and_disorder_are_repaired_and_logged(make_settings, tmp_path: Path) -> None:
    written = market_files(tmp_path / "data")
    messy = pd.concat([written["1h"].iloc[240:], written["1h"].iloc[:240], written["1h"].iloc[[400, 401]]])
    write_freqtrade(tmp_path / "data", "BTC/USDT", "1h", messy)
    outcome = await run_files(make_settings(), tmp_path / "data")
    repairs = outcome.values["quality"].repairs
    assert any("sorted" in r for r in repairs) and any("2 duplicate" in r for r in repairs)
    quality_event = next(e for e in outcome.values["audit"] if e.produced_by == "data_quality")
    assert quality_event.detail["repairs"] == repairs
    assert outcome.decision.action == "BUY"


async def test_a_stale_feed_holds(make_settings, tmp_path: Path) -> None:
    market_files(tmp_path / "data")
    outcome = await run_files(make_settings(), tmp_path / "data", as_of=END + timedelta(hours=3))
    assert outcome.decision.action == "HOLD" and "15m.fresh" in outcome.decision.reason


async def test_decision_timeframe_without_history_holds_with_the_count(make_settings, tmp_path: Path) -> None:
    data = tmp_path / "data"
    written = market_files(data)
    write_freqtrade(data, "BTC/USDT", "1h", written["1h"].iloc[-60:])
    (data / "BTC_USDT-15m.feather").unlink()
    outcome = await run_files(make_settings(), data, timeframes=["1h", "4h"])
    assert outcome.decision.action == "HOLD" and outcome.decision.stage == "market_data"
    assert "decision timeframe 1h unusable: 60 candles" in outcome.decision.reason


async def test_unknown_symbol_in_a_data_directory_is_rejected_with_close_matches(make_settings, tmp_path: Path) -> None:
    market_files(tmp_path / "data")
    settings = make_settings()
    async with open_storage(settings) as storage:
        runs = Lifecycles(settings, storage)
        request = make_request(settings, "BTC/USDC", source="files", data_dir=str(tmp_path / "data"), timeframes=TIMEFRAMES, decision_timeframe="1h", as_of=END)
        outcome = await runs.start(request)
    assert outcome.decision.action == "REJECT" and "BTC/USDT" in outcome.decision.reason


async def test_gaps_are_reported_with_count_and_largest_and_do_not_stop_the_run(make_settings, tmp_path: Path) -> None:
    written = market_files(tmp_path / "data")
    hourly = written["1h"]
    holed = hourly.drop(hourly.index[[-100, -99, -98, -50]])  # a three-hour hole and a one-hour hole
    write_freqtrade(tmp_path / "data", "BTC/USDT", "1h", holed)
    outcome = await run_files(make_settings(), tmp_path / "data", timeframes=["15m", "1h"])
    gaps = next(c for c in outcome.values["quality"].checks if c.name == "1h.gaps")
    assert gaps.detail == "2 gaps, largest 0 days 04:00:00"
    assert outcome.decision.stage != "data_quality"
