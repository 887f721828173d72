"""The live ccxt broker against a stand-in Binance.

No exchange is reachable here, so ccxt runs against the local Binance stub
(`tests/exchange_server.py`) with recorded/documented responses: ccxt's own request
signing, order-request building, error mapping and order parsing run unchanged; only
the host differs. The stub keeps orders in memory, fills MARKET orders at its
deterministic price, lets a test fill a resting order as the market would, and logs
every request (method, query, body, headers).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from tests.exchange_server import BinanceStub
from tools.brokers.base import BracketRequest, BrokerError
from tools.brokers.live import CcxtBroker

NOW = datetime(2024, 6, 1, 12, 30, tzinfo=UTC)
KEY = "kEy0LiveAPIkey0123456789abcdefXYZ"
SECRET = "sEcReT0live0secret0987654321zyxwvu"
COMMISSION = 0.001  # the stub's rate, in the asset received


@pytest.fixture
async def server() -> AsyncIterator[BinanceStub]:
    async with BinanceStub(NOW, hang_seconds=1.0) as stub:
        yield stub


@pytest.fixture
async def make_broker(server: BinanceStub) -> AsyncIterator[Callable[..., CcxtBroker]]:
    made: list[CcxtBroker] = []

    def make(**kwargs: Any) -> CcxtBroker:
        kwargs = {"base_delay": 0.001, "max_delay": 0.005, **kwargs}
        broker = CcxtBroker("binance", api_key=KEY, secret=SECRET, api_url=server.url, **kwargs)
        broker._exchange.timeout = 500  # ms
        broker._exchange.timeout_on_exit = 0  # plain HTTP: no TLS shutdown to wait for
        broker._exchange.enableRateLimit = False  # the stub has no limits; keeps the suite quick
        made.append(broker)
        return broker

    yield make
    for broker in made:
        await broker.close()


def bracket(bracket_id: str = "run1-a", **changes: Any) -> BracketRequest:
    fields: dict[str, Any] = dict(
        bracket_id=bracket_id, thread_id="thread-1", symbol="BTC/USDT", side="buy", quantity=0.01,
        reference_price=68_000.0, stop=66_000.0, target=72_000.0, as_of=NOW, risk_amount=20.9,
        strategies=["breakout@1"], tags=["L1"],
    )  # fmt: skip
    return BracketRequest(**(fields | changes))


def posts(server: BinanceStub) -> list[tuple[str, dict[str, str]]]:
    return [(r.path, r.params) for r in server.requests if r.method == "POST"]


def candles(*closes: float, start: datetime = NOW) -> pd.DataFrame:
    index = pd.DatetimeIndex([start + timedelta(hours=h) for h in range(len(closes))], name="time")
    return pd.DataFrame({"open": closes, "high": closes, "low": closes, "close": closes, "volume": 1.0}, index=index)


# --- placing ---------------------------------------------------------------------------------
async def test_a_market_bracket_is_an_entry_then_one_oco_with_the_bracket_client_ids(server, make_broker) -> None:
    position = await make_broker().place_bracket(bracket())

    price = server.price("BTCUSDT")
    (entry_path, entry), (oco_path, oco) = posts(server)
    assert entry_path == "/api/v3/order"
    assert (entry["type"], entry["side"], entry["quantity"], entry["newClientOrderId"]) == ("MARKET", "BUY", "0.01", "run1-a-entry")
    assert "price" not in entry and "quoteOrderQty" not in entry
    # protection: what was bought less the commission Binance took in BTC, as one OCO list
    assert oco_path == "/api/v3/orderList/oco"
    assert (oco["symbol"], oco["side"], oco["quantity"], oco["listClientOrderId"]) == ("BTCUSDT", "SELL", "0.00999", "run1-a")
    assert (oco["aboveType"], oco["abovePrice"], oco["aboveClientOrderId"]) == ("LIMIT_MAKER", "72000", "run1-a-tp")
    assert (oco["belowType"], oco["belowStopPrice"], oco["belowClientOrderId"]) == ("STOP_LOSS", "66000", "run1-a-sl")

    sl, tp = server.order("run1-a-sl"), server.order("run1-a-tp")
    assert server.order("run1-a-entry")["status"] == "FILLED"
    assert sl["status"] == tp["status"] == "NEW" and sl["orderListId"] == tp["orderListId"] != -1
    assert (position.status, position.entry_price, position.opened_at) == ("open", price, NOW)
    assert position.fees == pytest.approx(0.01 * COMMISSION * price)
    assert (position.stop, position.target, position.broker) == (66_000.0, 72_000.0, "binance-live")
    assert (position.thread_id, position.strategies, position.risk_amount) == ("thread-1", ["breakout@1"], 20.9)
    roles = {o.role: o for o in position.orders}
    assert roles["entry"].status == "filled" and roles["entry"].fill_price == price
    assert (roles["stop_loss"].type, roles["stop_loss"].price, roles["stop_loss"].quantity) == ("stop", 66_000.0, 0.00999)
    assert (roles["take_profit"].type, roles["take_profit"].price, roles["take_profit"].status) == ("limit", 72_000.0, "open")
    assert roles["stop_loss"].exchange_order_id == str(sl["orderId"])


async def test_a_sell_bracket_puts_the_stop_above_and_protects_the_whole_quantity(server, make_broker) -> None:
    await make_broker().place_bracket(bracket(side="sell", stop=70_000.0, target=64_000.0))
    oco = posts(server)[1][1]
    assert (oco["side"], oco["quantity"]) == ("BUY", "0.01")  # a sell pays its commission in USDT
    assert (oco["aboveType"], oco["aboveStopPrice"], oco["aboveClientOrderId"]) == ("STOP_LOSS", "70000", "run1-a-sl")
    assert (oco["belowType"], oco["belowPrice"], oco["belowClientOrderId"]) == ("LIMIT_MAKER", "64000", "run1-a-tp")


async def test_amounts_and_prices_go_out_on_the_markets_precision(server, make_broker) -> None:
    await make_broker().place_bracket(bracket(quantity=0.0123456, stop=66_000.129, target=72_000.991))
    (_, entry), (_, oco) = posts(server)
    assert entry["quantity"] == "0.01234"  # BTCUSDT steps 0.00001, ticks 0.01
    assert (oco["belowStopPrice"], oco["abovePrice"], oco["quantity"]) == ("66000.13", "72000.99", "0.01232")


async def test_placing_the_same_bracket_again_adopts_it(server, make_broker) -> None:
    broker = make_broker()
    first = await broker.place_bracket(bracket())
    again = await broker.place_bracket(bracket())
    assert len(posts(server)) == 2  # entry + OCO, once
    assert again == first


async def test_a_restarted_process_finds_the_bracket_at_the_exchange_and_adopts_it(server, make_broker) -> None:
    placed = await make_broker().place_bracket(bracket())
    restarted = make_broker()  # a new process: nothing in memory

    found = await restarted.find("run1-a", symbol="BTC/USDT")
    assert found is not None
    assert (found.status, found.side, found.quantity, found.entry_type) == ("open", "buy", 0.01, "market")
    assert (found.entry_price, found.stop, found.target, found.fees) == (placed.entry_price, 66_000.0, 72_000.0, placed.fees)
    assert [o.model_dump() for o in found.orders] == [o.model_dump() for o in placed.orders]
    assert await restarted.find("never-placed", symbol="BTC/USDT") is None
    with pytest.raises(BrokerError, match="symbol"):
        await restarted.find("run1-a")

    adopted = await restarted.place_bracket(bracket())
    assert len(posts(server)) == 2 and adopted == placed


async def test_an_entry_placed_by_a_crashed_process_is_adopted_and_protected(server, make_broker) -> None:
    crashed = make_broker()  # it bought, then died before protecting or recording anything
    await crashed._exchange.create_order("BTC/USDT", "market", "buy", 0.01, None, {"clientOrderId": "run1-a-entry"})

    position = await make_broker().place_bracket(bracket())

    assert [path for path, _ in posts(server)] == ["/api/v3/order", "/api/v3/orderList/oco"]  # no second entry
    assert position.status == "open" and server.order("run1-a-sl")["status"] == "NEW"


# --- rollback --------------------------------------------------------------------------------
async def test_when_the_stop_cannot_be_placed_the_entry_is_flattened_and_the_error_says_so(server, make_broker) -> None:
    broker = make_broker()
    server.fail("orderList/oco", "oco_bad_prices", order_type="STOP_LOSS")  # only the request carrying the stop

    with pytest.raises(BrokerError) as caught:
        await broker.place_bracket(bracket())

    message = str(caught.value)
    assert "rolled back" in message and "run1-a-flat" in message and "no naked position" in message
    assert "The relationship of the prices" in message  # the exchange's reason
    flat = server.order("run1-a-flat")
    assert (flat["type"], flat["side"], flat["status"], flat["origQty"]) == ("MARKET", "SELL", "FILLED", "0.00999000")
    assert server.order("run1-a-sl") is None and [o for o in server.orders.values() if o["status"] == "NEW"] == []

    # asked again (a retried node), it neither re-enters nor pretends the bracket is live
    with pytest.raises(BrokerError, match="rolled back earlier"):
        await broker.place_bracket(bracket())
    assert len(posts(server)) == 3  # entry, failed OCO, flatten


async def test_a_rolled_back_bracket_found_later_has_no_legs_to_rebuild_from(server, make_broker) -> None:
    server.fail("orderList/oco", "oco_bad_prices")
    with pytest.raises(BrokerError):
        await make_broker().place_bracket(bracket())
    with pytest.raises(BrokerError, match="no stop/target legs"):
        await make_broker().find("run1-a", symbol="BTC/USDT")


async def test_a_limit_bracket_that_cannot_be_placed_leaves_nothing_behind(server, make_broker) -> None:
    server.fail("orderList/otoco", "oco_bad_prices")
    with pytest.raises(BrokerError, match="not retryable"):
        await make_broker().place_bracket(bracket(entry_type="limit", limit_price=67_500.0))
    assert server.orders == {}  # the entry and its protection are one list: all or nothing


# --- retries -----------------------------------------------------------------------------------
@pytest.mark.parametrize("failure", ["503", "429"])
async def test_transient_failures_on_order_placement_are_retried(server, make_broker, failure) -> None:
    server.fail("order", failure, method="POST")
    server.fail("orderList/oco", failure)
    position = await make_broker().place_bracket(bracket())
    assert position.status == "open"
    assert [path for path, _ in posts(server)] == ["/api/v3/order"] * 2 + ["/api/v3/orderList/oco"] * 2
    assert [o["clientOrderId"] for o in server.orders.values()] == ["run1-a-entry", "run1-a-tp", "run1-a-sl"]


async def test_an_order_whose_answer_was_lost_is_adopted_not_placed_twice(server, make_broker) -> None:
    server.fail("order", "lost", method="POST")  # the exchange executes it, the answer never arrives
    position = await make_broker().place_bracket(bracket())
    assert len([p for p, _ in posts(server) if p == "/api/v3/order"]) == 1  # looked up, not re-sent
    assert [o["clientOrderId"] for o in server.orders.values()].count("run1-a-entry") == 1
    assert position.status == "open" and position.entry_price == server.price("BTCUSDT")


async def test_an_authentication_error_is_not_retried(server, make_broker) -> None:
    server.fail("order", "401", method="POST")
    with pytest.raises(BrokerError) as caught:
        await make_broker(max_attempts=5).place_bracket(bracket())
    assert "AuthenticationError" in str(caught.value) and "not retryable" in str(caught.value)
    assert len(posts(server)) == 1 and server.orders == {}


# --- following the bracket -----------------------------------------------------------------------
async def test_sync_after_the_stop_fills_closes_the_position_with_its_pnl(server, make_broker) -> None:
    broker = make_broker()
    position = await broker.place_bracket(bracket())
    server.advance(timedelta(hours=3))
    server.fill_order("run1-a-sl", 65_990.0)  # the stop triggered and its market order filled a little lower

    synced = await broker.sync(position, candles(66_500.0, 65_980.0, start=NOW + timedelta(hours=1)))

    assert server.order("run1-a-tp")["status"] == "EXPIRED"  # the OCO cancelled its twin
    assert (synced.status, synced.exit_reason, synced.exit_price) == ("closed", "stop", 65_990.0)
    assert synced.closed_at == NOW + timedelta(hours=3)
    entry_fee = 0.01 * COMMISSION * position.entry_price  # paid in BTC, valued at the fill
    exit_fee = 0.00999 * 65_990.0 * COMMISSION  # paid in USDT
    assert synced.fees == pytest.approx(entry_fee + exit_fee)
    assert synced.realized_pnl == pytest.approx((65_990.0 - position.entry_price) * 0.00999 - entry_fee - exit_fee)
    assert synced.realized_pnl < 0 and synced.unrealized_pnl is None
    assert synced.mark_price == 65_980.0 and synced.marked_at == NOW + timedelta(hours=2)
    roles = {o.role: o.status for o in synced.orders}
    assert roles == {"entry": "filled", "stop_loss": "filled", "take_profit": "cancelled"}
    assert synced.thread_id == "thread-1" and synced.strategies == ["breakout@1"]  # what only the ledger knew stays


async def test_sync_cancels_a_twin_that_still_rests_after_its_sibling_filled(server, make_broker) -> None:
    broker = make_broker()
    position = await broker.place_bracket(bracket())
    server.fill_order("run1-a-tp")
    tp, sl = server._newest("run1-a-tp"), server._newest("run1-a-sl")
    sl["status"] = "NEW"  # as if the stop were an independent order: nothing cancelled it

    synced = await broker.sync(position, candles(72_100.0))

    deletes = [r.params for r in server.requests if r.method == "DELETE"]
    assert [d["origClientOrderId"] for d in deletes] == ["run1-a-sl"]
    assert server.order("run1-a-sl")["status"] == "CANCELED" and tp["status"] == "FILLED"
    assert (synced.status, synced.exit_reason, synced.exit_price) == ("closed", "target", 72_000.0)
    assert synced.realized_pnl > 0


async def test_sync_marks_an_open_position_and_leaves_closed_ones_alone(server, make_broker) -> None:
    broker = make_broker()
    position = await broker.place_bracket(bracket())
    marked = await broker.sync(position, candles(69_000.0, 69_500.0))
    assert marked.status == "open" and marked.mark_price == 69_500.0
    assert marked.unrealized_pnl == pytest.approx((69_500.0 - position.entry_price) * 0.00999)
    before = len(server.requests)
    closed = marked.model_copy(update={"status": "closed"})
    assert await broker.sync(closed, candles(1.0)) is closed and len(server.requests) == before


async def test_a_limit_bracket_rests_with_its_protection_pending_until_the_entry_fills(server, make_broker) -> None:
    broker = make_broker()
    position = await broker.place_bracket(bracket(entry_type="limit", limit_price=67_500.0))

    ((path, otoco),) = posts(server)
    assert path == "/api/v3/orderList/otoco"
    def sent(*names: str) -> tuple[str, ...]:
        return tuple(otoco[n] for n in names)

    assert sent("workingType", "workingSide", "workingPrice", "workingQuantity") == ("LIMIT", "BUY", "67500", "0.01")
    assert sent("workingClientOrderId", "pendingSide", "pendingQuantity") == ("run1-a-entry", "SELL", "0.01")
    assert sent("pendingAboveType", "pendingAbovePrice", "pendingAboveClientOrderId") == ("LIMIT_MAKER", "72000", "run1-a-tp")
    assert sent("pendingBelowType", "pendingBelowStopPrice", "pendingBelowClientOrderId") == ("STOP_LOSS", "66000", "run1-a-sl")
    assert position.status == "pending" and position.entry_price is None and position.limit_price == 67_500.0
    assert server.order("run1-a-sl")["status"] == "PENDING_NEW"

    server.advance(timedelta(hours=1))
    server.fill_order("run1-a-entry")
    opened = await broker.sync(position, candles(67_800.0))
    assert (opened.status, opened.entry_price, opened.opened_at) == ("open", 67_500.0, NOW + timedelta(hours=1))
    assert server.order("run1-a-sl")["status"] == "NEW"

    server.fill_order("run1-a-tp")
    closed = await broker.sync(opened, candles(72_050.0))
    assert (closed.status, closed.exit_reason, closed.exit_price) == ("closed", "target", 72_000.0)
    assert len(posts(server)) == 1  # the exchange did all of it


async def test_cancel_takes_back_an_unfilled_limit_entry_with_its_pending_legs(server, make_broker) -> None:
    broker = make_broker()
    position = await broker.place_bracket(bracket(entry_type="limit", limit_price=67_500.0))
    cancelled = await broker.cancel(position, "halt")
    assert (cancelled.status, cancelled.exit_reason) == ("cancelled", "halt")
    assert {server.order(f"run1-a-{s}")["status"] for s in ("entry", "sl", "tp")} == {"CANCELED"}
    assert {o.status for o in cancelled.orders} == {"cancelled"}
    assert [r.params["origClientOrderId"] for r in server.requests if r.method == "DELETE"] == ["run1-a-entry"]


async def test_cancel_never_pulls_the_protection_of_an_open_position(server, make_broker) -> None:
    broker = make_broker()
    position = await broker.place_bracket(bracket())
    assert await broker.cancel(position, "halt") is position
    assert [r for r in server.requests if r.method == "DELETE"] == []
    assert server.order("run1-a-sl")["status"] == "NEW"


# --- secrets -------------------------------------------------------------------------------------
async def test_the_keys_travel_only_in_the_api_key_header_and_never_reach_repr_errors_or_logs(
    server, make_broker, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    broker = make_broker()
    assert KEY not in repr(broker) and SECRET not in repr(broker) and SECRET not in str(broker)
    await broker.place_bracket(bracket("ok-1"))
    errors = []
    server.fail("orderList/oco", "oco_bad_prices")
    with pytest.raises(BrokerError) as rollback:
        await broker.place_bracket(bracket("rolled-1"))
    errors.append(str(rollback.value))
    server.fail("order", "503", "503", "503", "503", method="POST")
    with pytest.raises(BrokerError) as exhausted:
        await broker.place_bracket(bracket("down-1"))
    errors.append(str(exhausted.value))
    server.fail("order", "401", method="POST")
    with pytest.raises(BrokerError) as auth:
        await make_broker().place_bracket(bracket("auth-1"))
    errors.append(str(auth.value))

    assert all(KEY not in e and SECRET not in e for e in errors)
    assert "after 4 attempts" in errors[1]
    signed = [r for r in server.requests if r.path != "/api/v3/exchangeInfo"]
    assert signed and all(dict(r.headers)["X-MBX-APIKEY"] == KEY for r in signed)
    for r in server.requests:
        other_headers = [v for k, v in r.headers if k.lower() != "x-mbx-apikey"]
        travelled = r.query + r.body + "".join(other_headers) + "".join(r.params.values())
        assert KEY not in travelled and SECRET not in travelled
    assert KEY not in caplog.text and SECRET not in caplog.text


def test_keys_are_required_and_only_binance_spot_is_supported() -> None:
    with pytest.raises(ValueError) as missing:
        CcxtBroker("binance", api_key="", secret=SECRET)
    assert SECRET not in str(missing.value)
    with pytest.raises(ValueError, match="Binance"):
        CcxtBroker("kraken", api_key=KEY, secret=SECRET)
