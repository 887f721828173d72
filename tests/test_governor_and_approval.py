"""Governor (L0), approval expiry and modify, on the real SQLite file and the real PostgreSQL server.

Real graph, real savers, built-in market data and the paper broker, whose book
lives in the same database: nothing here is faked.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from api.runs import Lifecycles, make_request
from state import Settings
from state.sections import ApprovalResponse
from tools.governor import Governor
from tools.storage import open_storage

CLOCK = datetime(2026, 11, 20, 13, 37, tzinfo=UTC)


def uptrend(settings: Settings, symbol: str = "BTC/USDT", approval: str = "observe"):
    return make_request(settings, symbol, scenario="uptrend", approval_mode=approval, as_of=CLOCK)


async def test_halt_rejects_new_runs_until_resumed(backend_settings: Settings) -> None:
    async with open_storage(backend_settings) as storage:
        runs = Lifecycles(backend_settings, storage)
        governor = Governor(storage.ledger, storage.audit)
        await governor.halt("operator kill switch", "dave", runs.hub.brokers())
        held = await runs.start(uptrend(backend_settings))
        assert held.decision.action == "REJECT" and held.decision.stage == "risk"
        assert "operator kill switch" in held.decision.reason
        assert await storage.ledger.positions() == []
        await governor.resume("dave", "all clear")
        traded = await runs.start(uptrend(backend_settings))
        trail = await storage.audit.trail("governor")
    assert traded.decision.action == "BUY"
    assert [row.verdict for row in trail] == ["HALT", "RESUME"]


async def test_halt_while_waiting_for_approval_stops_execution(backend_settings: Settings) -> None:
    async with open_storage(backend_settings) as storage:
        runs = Lifecycles(backend_settings, storage)
        paused = await runs.start(uptrend(backend_settings, approval="always"))
        assert paused.pending is not None
        await Governor(storage.ledger).halt("breaker test", "erin", runs.hub.brokers())
        done = await runs.resume(paused.thread_id, ApprovalResponse(action="approve", by="frank"))
        positions = await storage.ledger.positions()
    # The operator said yes, but the halt came after risk: execution's own check stops it.
    assert done.decision.action == "REJECT" and done.decision.stage == "execute"
    assert "breaker test" in done.decision.reason
    assert positions == [] and "orders" not in done.values


async def test_halt_cancels_resting_entries_but_keeps_protective_stops(backend_settings: Settings, make_settings) -> None:
    settings = backend_settings.model_copy(update={"entry_order_type": "limit"})
    async with open_storage(settings) as storage:
        runs = Lifecycles(settings, storage)
        resting = await runs.start(uptrend(settings, "BTC/USDT"))
        assert resting.decision.action == "BUY"
        market_settings = settings.model_copy(update={"entry_order_type": "market"})
        filled = await Lifecycles(market_settings, storage).start(uptrend(market_settings, "ETH/USDT"))
        assert filled.values["orders"].position.status == "open"
        assert resting.values["orders"].position.status == "pending"
        outcome = await Governor(storage.ledger).halt("stop everything", "gina", runs.hub.brokers())
        book = {p.symbol: p for p in await storage.ledger.positions()}
    assert [p.symbol for p in outcome.cancelled] == ["BTC/USDT"]
    assert book["BTC/USDT"].status == "cancelled" and book["BTC/USDT"].exit_reason == "halt"
    assert {o.status for o in book["BTC/USDT"].orders} == {"cancelled"}
    assert book["ETH/USDT"].status == "open"
    assert {o.role: o.status for o in book["ETH/USDT"].orders} == {"entry": "filled", "stop_loss": "open", "take_profit": "open"}


async def test_disabled_strategy_carries_no_weight(backend_settings: Settings) -> None:
    async with open_storage(backend_settings) as storage:
        runs = Lifecycles(backend_settings, storage)
        await Governor(storage.ledger).set_strategy("ema_trend", enabled=False, by="hal", reason="misbehaving")
        outcome = await runs.start(uptrend(backend_settings))
    consensus = outcome.values["consensus"]
    assert "ema_trend" not in consensus.weights and "ema_trend" in outcome.values["signals"]
    assert "disabled by the governor: ema_trend" in consensus.reason


async def test_capital_budget_limits_the_open_book(backend_settings: Settings) -> None:
    async with open_storage(backend_settings) as storage:
        runs = Lifecycles(backend_settings, storage)
        await Governor(storage.ledger).set_budget(1_000.0, by="ivy")
        outcome = await runs.start(uptrend(backend_settings))
    assert outcome.decision.action == "BUY"
    assert outcome.values["risk"].notional <= 1_000.0 + 1e-6


async def test_an_approval_past_its_ttl_expires_instead_of_trading(backend_settings: Settings) -> None:
    settings = backend_settings.model_copy(update={"approval_ttl_seconds": 0.5})
    async with open_storage(settings) as storage:
        runs = Lifecycles(settings, storage)
        paused = await runs.start(uptrend(settings, approval="always"))
        assert paused.pending.proposal["expires_at"]
        await asyncio.sleep(0.6)
        done = await runs.resume(paused.thread_id, ApprovalResponse(action="approve", by="jack"))
        assert await storage.ledger.positions() == []
        assert await runs.pending_approvals() == []
    assert done.decision.action == "REJECT" and "expired" in done.decision.reason
    assert done.values["approval"].status == "expired" and done.values["approval"].by == "jack"


async def test_the_sweep_expires_unanswered_approvals(backend_settings: Settings) -> None:
    settings = backend_settings.model_copy(update={"approval_ttl_seconds": 0.2})
    async with open_storage(settings) as storage:
        runs = Lifecycles(settings, storage)
        paused = await runs.start(uptrend(settings, approval="always"))
        fresh = await Lifecycles(settings.model_copy(update={"approval_ttl_seconds": 3600}), storage).start(
            uptrend(settings, "ETH/USDT", approval="always")
        )
        assert {row["thread_id"] for row in await runs.pending_approvals()} == {paused.thread_id, fresh.thread_id}
        await asyncio.sleep(0.3)
        expired = await runs.expire_stale()
        left = await runs.pending_approvals()
    assert [o.thread_id for o in expired] == [paused.thread_id]
    assert expired[0].values["approval"].status == "expired" and expired[0].values["approval"].by == "expiry"
    assert [row["thread_id"] for row in left] == [fresh.thread_id]


async def test_price_drift_beyond_the_limit_expires_the_approval(backend_settings: Settings) -> None:
    """A tiny drift allowance and a clock that moves on: by the answer a new 1m candle has another price."""
    settings = backend_settings.model_copy(update={"approval_max_drift": 1e-9})
    # Decide 1.5 s before a minute closes: the market clock at the answer is the run's clock plus the wait.
    as_of = CLOCK.replace(second=58, microsecond=500_000)
    async with open_storage(settings) as storage:
        runs = Lifecycles(settings, storage)
        timeframes = ["1m", "5m", "15m", "1h", "4h"]
        request = make_request(settings, "BTC/USDT", scenario="uptrend", approval_mode="always", as_of=as_of, timeframes=timeframes)
        paused = await runs.start(request)
        assert paused.pending is not None
        await asyncio.sleep(max(0.0, 2.0 - (datetime.now(UTC) - paused.values["risk"].decided_at).total_seconds()))
        done = await runs.resume(paused.thread_id, ApprovalResponse(action="approve", by="kim"))
    assert done.decision.action == "REJECT" and "price" in done.decision.reason and "expired" in done.decision.reason


@pytest.mark.parametrize("widen", [True, False])
async def test_modify_with_a_stop_is_rechecked_by_risk(backend_settings: Settings, widen: bool) -> None:
    async with open_storage(backend_settings) as storage:
        runs = Lifecycles(backend_settings, storage)
        paused = await runs.start(uptrend(backend_settings, approval="always"))
        proposal = paused.pending.proposal
        stop = proposal["stop"] * (0.97 if widen else 1.01)  # a long's stop widens downwards
        done = await runs.resume(paused.thread_id, ApprovalResponse(action="modify", by="lee", stop=stop))
    if not widen:
        assert done.decision.action == "REJECT" and "only widen" in done.decision.reason
        return
    assert done.decision.action == "BUY"
    position = done.values["orders"].position
    assert position.stop == pytest.approx(stop)
    # The same 1 % risk over a wider stop means a smaller size.
    assert position.quantity < proposal["quantity"]
    assert position.quantity * abs(proposal["entry"] - stop) <= backend_settings.risk_per_trade * backend_settings.account_equity * 1.0001


async def test_the_runs_index_follows_each_run_through_its_states(backend_settings: Settings) -> None:
    async with open_storage(backend_settings) as storage:
        runs = Lifecycles(backend_settings, storage)
        paused = await runs.start(uptrend(backend_settings, approval="always"))
        assert (await storage.ledger.run(paused.thread_id))["status"] == "paused"
        done = await runs.start(uptrend(backend_settings, "ETH/USDT"))
        await runs.resume(paused.thread_id, ApprovalResponse(action="reject", by="nina", reason="not today"))
        rows = {row["thread_id"]: row for row in await storage.ledger.runs()}
        only_eth = await storage.ledger.runs(symbol="ETH/USDT")
    assert rows[done.thread_id]["status"] == "done" and rows[done.thread_id]["action"] == "BUY"
    assert rows[paused.thread_id]["status"] == "done" and rows[paused.thread_id]["action"] == "REJECT"
    assert "nina" in rows[paused.thread_id]["reason"]
    assert [row["thread_id"] for row in only_eth] == [done.thread_id]


async def test_runs_side_by_side_cannot_both_spend_the_room_under_a_cap(backend_settings: Settings) -> None:
    """ETH and SOL share the smart-contract tag. Sized at the same moment each sees an empty book and
    wants ~40 % of equity; execution looks at the book again under the process's book lock, so the
    second is cut to what the first left (or refused), and the tag cap holds."""
    settings = backend_settings.model_copy(update={"max_tag_exposure": 0.5, "llm_enabled": False})
    async with open_storage(settings) as storage:
        runs = Lifecycles(settings, storage)
        outcomes = await asyncio.gather(*(runs.start(uptrend(settings, symbol)) for symbol in ("ETH/USDT", "SOL/USDT")))
        book = await storage.ledger.live_positions()
    sized = [o.values["risk"].notional / o.values["risk"].equity for o in outcomes]
    assert sum(sized) > 0.5  # each was sized alone against an empty book: together they would break the cap
    tag_exposure = sum(p.notional() for p in book) / settings.account_equity
    assert book and tag_exposure <= 0.5 * (1 + settings.slippage_bps / 10_000)  # sized at the last price, filled with slippage
    later = [o for o in outcomes if o.decision.action == "REJECT" or (o.values.get("orders") and o.values["orders"].position.quantity < o.values["risk"].quantity)]
    assert len(later) == 1 and ("book changed" in later[0].decision.reason or later[0].decision.action == "BUY")
