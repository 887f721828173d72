"""CcxtSource against a local HTTP endpoint that answers like Binance's spot REST API.

There is no network here, so no exchange is reachable: the fake exchange is a local
aiohttp server (tests/exchange_server.py) serving responses in Binance's documented wire
format (static documents under tests/recorded/binance/, klines generated from a
deterministic series). CcxtSource points ccxt at it through ``api_url``, so ccxt's real
request building, HTTP error mapping and response parsing are what these tests exercise.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import ccxt
import numpy as np
import pandas as pd
import pytest

from tests.exchange_server import BinanceStub
from tools.market_data.base import OHLCV_COLUMNS, MarketDataError, UnknownSymbol
from tools.market_data.ccxt_source import CcxtSource
from tools.retry import transient

NOW = datetime(2024, 6, 1, 12, 30, tzinfo=UTC)  # the fake exchange's clock: the 12:00 hourly candle is forming
HOUR_MS = 3_600_000


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def expected_frame(rows: list[list[Any]]) -> pd.DataFrame:
    """What the server's wire rows should become, built independently of the source."""
    index = pd.DatetimeIndex([datetime.fromtimestamp(r[0] / 1000, tz=UTC) for r in rows], name="time")
    values = [[float(v) for v in r[1:6]] for r in rows]
    return pd.DataFrame(values, index=index.as_unit("ns"), columns=OHLCV_COLUMNS, dtype=np.float64)


@pytest.fixture
async def server() -> AsyncIterator[BinanceStub]:
    halted = {"LUNAUSDT": datetime(2024, 5, 31, tzinfo=UTC)}  # the BREAK market stopped trading
    async with BinanceStub(NOW, hang_seconds=2.0, halted=halted) as stub:
        yield stub


@pytest.fixture
async def make_source(server: BinanceStub) -> AsyncIterator[Callable[..., CcxtSource]]:
    made: list[CcxtSource] = []

    def make(**kwargs: Any) -> CcxtSource:
        kwargs = {"base_delay": 0.001, "max_delay": 0.005, **kwargs}  # real backoff, tiny delays
        source = CcxtSource("binance", api_url=server.url, **kwargs)
        source.exchange.timeout = 250  # ms: lets the "timeout" script trip ccxt's own timeout fast
        source.exchange.timeout_on_exit = 0  # ccxt waits 250 ms on close for TLS shutdown; plain HTTP here
        made.append(source)
        return source

    yield make
    for source in made:
        await source.close()
        assert source.exchange.session is None  # the aiohttp session really was closed


# --- candles through ccxt's parsing ------------------------------------------------------
async def test_hourly_candles_match_the_exchange_series_and_exclude_the_forming_one(server, make_source) -> None:
    source = make_source()
    frame = await source.fetch_candles("BTC/USDT", "1h", until=NOW, limit=48)

    last_closed = datetime(2024, 6, 1, 11, tzinfo=UTC)  # 12:00 opened but has not closed at 12:30
    want = expected_frame(server.closed_candles("BTCUSDT", "1h", ms(last_closed) - 47 * HOUR_MS, ms(last_closed)))
    assert len(want) == 48
    pd.testing.assert_frame_equal(frame, want, check_exact=True, check_freq=False)
    assert str(frame.index.tz) == "UTC" and frame.index.name == "time"
    assert (frame.dtypes == np.float64).all() and list(frame.columns) == OHLCV_COLUMNS
    assert frame.index[-1] == pd.Timestamp(last_closed)
    # the exchange did send the forming candle; the source dropped it
    assert server.requests_to("klines")[-1]["symbol"] == "BTCUSDT"


async def test_a_candle_closing_exactly_at_until_is_included(server, make_source) -> None:
    until = datetime(2024, 5, 20, tzinfo=UTC)
    frame = await make_source().fetch_candles("ETH/USDT", "1h", until=until, limit=3)
    assert list(frame.index) == [pd.Timestamp(until - timedelta(hours=h)) for h in (3, 2, 1)]


async def test_daily_candles_since_a_date(server, make_source) -> None:
    since = datetime(2024, 3, 1, tzinfo=UTC)
    frame = await make_source().fetch_since("ETH/USDT", "1d", since=since, until=NOW)
    want = expected_frame(server.closed_candles("ETHUSDT", "1d", ms(since), ms(datetime(2024, 5, 31, tzinfo=UTC))))
    assert len(want) == 92  # 1 March .. 31 May; 1 June is still forming at NOW
    pd.testing.assert_frame_equal(frame, want, check_exact=True, check_freq=False)


async def test_newer_candles_appear_when_the_exchange_clock_moves(server, make_source) -> None:
    source = make_source()
    before = await source.fetch_candles("SOL/USDT", "1h", until=NOW, limit=5)
    server.advance(timedelta(hours=2))
    later = NOW + timedelta(hours=2)
    after = await source.fetch_candles("SOL/USDT", "1h", until=later, limit=5)
    assert after.index[-1] - before.index[-1] == pd.Timedelta(hours=2)
    pd.testing.assert_frame_equal(after.iloc[:3], before.iloc[2:], check_exact=True, check_freq=False)
    # the candle that was forming at NOW is served complete now, not with its partial values
    want = expected_frame(server.closed_candles("SOLUSDT", "1h", ms(NOW) - 1_800_000, ms(NOW) - 1_800_000))
    pd.testing.assert_frame_equal(after.iloc[[-2]], want, check_exact=True, check_freq=False)


# --- pagination ----------------------------------------------------------------------------
async def test_pagination_advances_start_time_and_returns_a_contiguous_frame(server, make_source) -> None:
    source = make_source(page_limit=100)
    since = NOW.replace(minute=0) - timedelta(hours=350)
    frame = await source.fetch_since("BTC/USDT", "1h", since=since, until=NOW)

    calls = server.requests_to("klines")
    starts = [int(c["startTime"]) for c in calls]
    assert [int(c["limit"]) for c in calls] == [100] * 4
    assert starts == [ms(since) + k * 100 * HOUR_MS for k in range(4)]
    assert len(frame) == 350 and frame.index.is_unique and frame.index.is_monotonic_increasing
    assert (frame.index.to_series().diff().dropna() == pd.Timedelta(hours=1)).all()
    want = expected_frame(server.closed_candles("BTCUSDT", "1h", ms(since), ms(NOW)))
    pd.testing.assert_frame_equal(frame, want, check_exact=True, check_freq=False)


async def test_pagination_stops_when_the_exchange_has_nothing_newer(server, make_source) -> None:
    # LUNA/USDT halted at 2024-05-31 00:00: asking up to NOW must not loop or invent candles
    since = datetime(2024, 5, 30, 14, tzinfo=UTC)
    frame = await make_source(page_limit=100).fetch_since("LUNA/USDT", "1h", since=since, until=NOW)
    assert len(frame) == 10 and frame.index[-1] == pd.Timestamp("2024-05-30 23:00", tz="UTC")
    assert len(server.requests_to("klines")) == 2  # 10 candles, then an empty page


async def test_history_before_the_listing_is_an_empty_frame(server, make_source) -> None:
    frame = await make_source().fetch_since(
        "BTC/USDT", "1d", since=datetime(2019, 1, 1, tzinfo=UTC), until=datetime(2019, 6, 1, tzinfo=UTC)
    )
    assert frame.empty and list(frame.columns) == OHLCV_COLUMNS and str(frame.index.tz) == "UTC"


# --- markets -------------------------------------------------------------------------------
async def test_markets_load_once_for_concurrent_callers(server, make_source) -> None:
    source = make_source()
    await asyncio.gather(
        source.fetch_candles("BTC/USDT", "1h", until=NOW, limit=5),
        source.fetch_candles("ETH/USDT", "4h", until=NOW, limit=5),
        source.fetch_candles("SOL/USDT", "1d", until=NOW, limit=5),
        source.market_info("BTC/USDC"),
    )
    await source.fetch_candles("BTC/USDT", "1h", until=NOW, limit=5)
    assert len(server.requests_to("exchangeInfo")) == 1
    # spot only, and nothing that needs API keys (sapi currencies/margin) or other market types
    assert {r.path for r in server.requests} == {"/api/v3/exchangeInfo", "/api/v3/klines", "/api/v3/ticker/24hr"}


async def test_a_failed_market_load_is_not_cached(server, make_source) -> None:
    source = make_source()
    server.fail("exchangeInfo", "401")
    with pytest.raises(MarketDataError):
        await source.fetch_candles("BTC/USDT", "1h", until=NOW, limit=5)
    await source.fetch_candles("BTC/USDT", "1h", until=NOW, limit=5)
    assert len(server.requests_to("exchangeInfo")) == 2


async def test_unknown_symbol_lists_close_matches_without_asking_for_candles(server, make_source) -> None:
    source = make_source()
    with pytest.raises(UnknownSymbol) as caught:
        await source.fetch_candles("BTC/USDX", "1h", until=NOW, limit=5)
    message = str(caught.value)
    assert "BTC/USDX" in message and "binance" in message
    assert "BTC/USDT" in message and "BTC/USDC" in message
    with pytest.raises(UnknownSymbol):  # a perpetual: only spot markets were loaded
        await source.fetch_candles("BTC/USDT:USDT", "1h", until=NOW, limit=5)
    assert server.requests_to("klines") == []


async def test_market_info(server, make_source) -> None:
    source = make_source()
    info = await source.market_info("BTC/USDT")
    assert (info.base, info.quote, info.type, info.active) == ("BTC", "USDT", "spot", True)
    assert info.amount_min == 0.00001 and info.cost_min == 5.0
    assert info.amount_precision == 0.00001 and info.price_precision == 0.01
    assert info.quote_volume_24h == pytest.approx(1254991320.4021417)
    assert server.requests_to("ticker/24hr") == [{"symbol": "BTCUSDT"}]

    halted = await source.market_info("LUNA/USDT")
    assert halted.active is False and halted.quote_volume_24h == 0.0 and halted.price_precision == 0.0001


# --- errors and retries ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("failure", "error"),
    [
        ("429", ccxt.DDoSProtection),  # binance checks 418/429 itself, before ccxt's RateLimitExceeded table
        ("418", ccxt.DDoSProtection),
        ("503", ccxt.ExchangeNotAvailable),
        ("504", ccxt.RequestTimeout),
        ("timeout", ccxt.RequestTimeout),
        ("401", ccxt.AuthenticationError),
        ("bad_symbol", ccxt.BadSymbol),
        ("500", ccxt.OperationFailed),  # {"code":-1001}: ccxt's class, not a NetworkError
    ],
)
async def test_ccxt_maps_the_scripted_responses(server, make_source, failure, error) -> None:
    source = make_source()
    await source.exchange.load_markets()
    server.fail("klines", failure)
    with pytest.raises(error):
        await source.exchange.fetch_ohlcv("BTC/USDT", "1h", limit=2)


@pytest.mark.parametrize("failure", ["429", "418", "503", "504", "timeout"])
async def test_transient_failures_are_retried_then_succeed(server, make_source, failure) -> None:
    source = make_source(max_attempts=3)
    server.fail("klines", failure, failure)
    frame = await source.fetch_candles("BTC/USDT", "1h", until=NOW, limit=5)
    assert len(frame) == 5
    assert len(server.requests_to("klines")) == 3


async def test_market_loading_is_retried_too(server, make_source) -> None:
    server.fail("exchangeInfo", "503")
    await make_source().market_info("ETH/USDT")
    assert len(server.requests_to("exchangeInfo")) == 2


async def test_giving_up_after_max_attempts(server, make_source) -> None:
    source = make_source(max_attempts=3)
    server.fail("klines", "503", "503", "503", "503")
    with pytest.raises(MarketDataError) as caught:
        await source.fetch_candles("BTC/USDT", "1h", until=NOW, limit=5)
    message = str(caught.value)
    assert "binance" in message and "fetch_ohlcv" in message and "3 attempts" in message
    assert isinstance(caught.value.__cause__, ccxt.ExchangeNotAvailable)
    assert len(server.requests_to("klines")) == 3


@pytest.mark.parametrize(
    ("failure", "raised", "cause"),
    [("401", MarketDataError, ccxt.AuthenticationError), ("bad_symbol", UnknownSymbol, ccxt.BadSymbol)],
)
async def test_permanent_errors_are_not_retried(server, make_source, failure, raised, cause) -> None:
    source = make_source(max_attempts=5)
    server.fail("klines", failure)
    with pytest.raises(raised) as caught:
        await source.fetch_candles("BTC/USDT", "1h", until=NOW, limit=5)
    assert type(caught.value) is raised and isinstance(caught.value.__cause__, cause)
    assert "binance" in str(caught.value)
    assert len(server.requests_to("klines")) == 1


def test_transient_is_the_network_error_family() -> None:
    retried = [ccxt.RequestTimeout, ccxt.RateLimitExceeded, ccxt.DDoSProtection, ccxt.ExchangeNotAvailable]
    retried += [ccxt.OnMaintenance, ccxt.NetworkError]
    never = [ccxt.AuthenticationError, ccxt.BadSymbol, ccxt.InsufficientFunds, ccxt.ExchangeError]
    never += [ccxt.OperationFailed, ValueError, asyncio.TimeoutError]
    assert all(transient(cls("x")) for cls in retried)
    assert not any(transient(cls("x")) for cls in never)


# --- construction ------------------------------------------------------------------------------
def test_unknown_exchange_lists_close_matches() -> None:
    with pytest.raises(ValueError, match="binance"):
        CcxtSource("binanse")


async def test_api_url_keeps_each_endpoint_path(server) -> None:
    source = CcxtSource("binance", api_url=server.url + "/")
    try:
        api = source.exchange.urls["api"]
        assert api["public"] == server.url + "/api/v3"
        assert api["fapiPublic"] == server.url + "/fapi/v1" and api["sapi"] == server.url + "/sapi/v1"
        assert source.name == "ccxt:binance" and source.page_limit == 1000
    finally:
        await source.close()


async def test_markets_list_spot_markets_with_their_volume_for_a_scan(server, make_source) -> None:
    """What `aitrader scan --top N` reads: every spot market with one fetch_tickers call for the volumes."""
    from tools.scan import top_markets

    listed = await make_source().markets()
    by_symbol = {m.symbol: m for m in listed}
    assert by_symbol["BTC/USDT"].quote_volume_24h == pytest.approx(1254991320.4021417)
    assert by_symbol["LUNA/USDT"].active is False
    assert all(m.type == "spot" for m in listed)
    assert len(server.requests_to("ticker/24hr")) == 1  # one call for every market's volume
    usdt = sorted((m for m in listed if m.quote == "USDT" and m.active and m.quote_volume_24h), key=lambda m: -m.quote_volume_24h)
    assert top_markets(listed, top=2, quote="USDT", min_quote_volume=0) == [m.symbol for m in usdt[:2]]
    assert "LUNA/USDT" not in top_markets(listed, top=100, quote="USDT", min_quote_volume=0)
    floor = usdt[0].quote_volume_24h
    assert top_markets(listed, top=100, quote="USDT", min_quote_volume=floor) == ["BTC/USDT"] == [usdt[0].symbol]
