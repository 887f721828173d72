"""Monitoring: open brackets filled against the candles that follow, P&L booked, breakers tripped.

Real savers and ledger on SQLite and PostgreSQL, the built-in market data and the paper broker.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.runs import Lifecycles, make_request
from state import Settings
from tools.portfolio import monitor
from tools.storage import open_storage

CLOCK = datetime(2026, 11, 20, 13, 37, tzinfo=UTC)


async def test_a_later_run_books_the_target_fill_and_sizes_from_the_new_equity(backend_settings: Settings) -> None:
    async with open_storage(backend_settings) as storage:
        runs = Lifecycles(backend_settings, storage)
        first = await runs.start(make_request(backend_settings, "BTC/USDT", scenario="uptrend", as_of=CLOCK))
        assert first.values["orders"].position.status == "open"
        later = await runs.start(make_request(backend_settings, "ETH/USDT", scenario="uptrend", as_of=CLOCK + timedelta(days=1)))
        btc = (await storage.ledger.positions(symbol="BTC/USDT"))[0]
    assert btc.status == "closed" and btc.exit_reason == "target"
    legs = {o.role: o for o in btc.orders}
    assert legs["take_profit"].status == "filled" and legs["stop_loss"].status == "cancelled"  # one cancels the other
    assert btc.exit_price >= btc.target and btc.closed_at > CLOCK
    fees = sum(o.fee for o in btc.orders)
    assert btc.realized_pnl == pytest.approx((btc.exit_price - btc.entry_price) * btc.quantity - fees)
    assert later.values["risk"].equity == pytest.approx(backend_settings.account_equity + btc.realized_pnl)


async def test_a_breached_drawdown_trips_the_governor_and_new_runs_are_held(backend_settings: Settings) -> None:
    settings = backend_settings.model_copy(update={"drawdown_monthly_limit": 0.005})
    async with open_storage(settings) as storage:
        runs = Lifecycles(settings, storage)
        await runs.start(make_request(settings, "BTC/USDT", scenario="uptrend", as_of=CLOCK))
        # The market that followed: the built-in crash scenario stands in for it.
        crashed = runs.hub.for_request(make_request(settings, "BTC/USDT", scenario="crash")).source
        book = await monitor(storage.ledger, runs.hub.brokers(), lambda position: crashed, "5m", CLOCK + timedelta(hours=12), settings)
        btc = (await storage.ledger.positions(symbol="BTC/USDT"))[0]
        governor = await storage.ledger.governor()
        held = await runs.start(make_request(settings, "ETH/USDT", scenario="uptrend", as_of=CLOCK + timedelta(hours=12)))
    assert btc.status == "closed" and btc.exit_reason == "stop" and btc.realized_pnl < 0
    assert book.drawdowns["monthly"] == pytest.approx(-btc.realized_pnl / settings.account_equity)
    assert governor.halted and governor.changed_by == "breaker" and "monthly" in governor.reason
    assert book.tripped == governor.reason
    assert held.decision.action == "REJECT" and "drawdown breaker" in held.decision.reason


async def test_positions_command_marks_open_positions(backend_settings: Settings) -> None:
    async with open_storage(backend_settings) as storage:
        runs = Lifecycles(backend_settings, storage)
        await runs.start(make_request(backend_settings, "BTC/USDT", scenario="uptrend", as_of=CLOCK))
        book = await monitor(storage.ledger, runs.hub.brokers(), runs.hub.position_source, "5m", CLOCK + timedelta(minutes=30), backend_settings)
    (btc,) = book.live
    assert btc.marked_at is not None and btc.marked_at > CLOCK and btc.mark_price > 0
    entry_fee = btc.orders[0].fee
    assert btc.unrealized_pnl == pytest.approx((btc.mark_price - btc.entry_price) * btc.quantity - entry_fee)
