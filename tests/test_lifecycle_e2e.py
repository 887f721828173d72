"""The whole lifecycle end to end, on the embedded SQLite file and on the real PostgreSQL server.

Real graph, real savers, the built-in market-data source and the paper broker:
nothing here is faked.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from api.runs import Lifecycles, NotPending, make_request
from state import Settings
from state.sections import ApprovalResponse
from tools.storage import open_storage

CLOCK = datetime(2026, 11, 20, 13, 37, tzinfo=UTC)


def request_for(settings: Settings, scenario: str, approval: str = "observe", symbol: str = "BTC/USDT"):
    return make_request(settings, symbol, scenario=scenario, approval_mode=approval, as_of=CLOCK)


async def test_uptrend_reaches_a_filled_long_and_range_holds(backend_settings: Settings) -> None:
    async with open_storage(backend_settings) as storage:
        runs = Lifecycles(backend_settings, storage)
        up = await runs.start(request_for(backend_settings, "uptrend"))
        flat = await runs.start(request_for(backend_settings, "range"))
    assert up.decision.action == "BUY", up.decision.reason
    assert up.values["consensus"].direction == "LONG"
    entry = up.values["orders"].orders[0]
    assert entry.role == "entry" and entry.status == "filled"
    risk = up.values["risk"]
    # 1 % of equity is lost if the stop is hit (before the leverage cap, which can only shrink it).
    assert risk.risk_amount == pytest.approx(min(100.0, risk.quantity * abs(risk.entry - risk.stop)))
    assert risk.risk_amount <= 0.01 * backend_settings.account_equity + 1e-6
    assert flat.decision.action == "HOLD"
    assert flat.decision.stage == "aggregate"
    assert "orders" not in flat.values


async def test_parallel_sections_all_survive_the_merge(backend_settings: Settings) -> None:
    async with open_storage(backend_settings) as storage:
        outcome = await Lifecycles(backend_settings, storage).start(request_for(backend_settings, "uptrend"))
    features, levels = outcome.values["features"], outcome.values["levels"]
    assert features.regime is not None and features.structure is not None
    assert levels.support_resistance is not None and levels.fibonacci is not None and levels.confluence is not None
    from nodes.strategies import registered_strategies

    assert set(outcome.values["signals"]) == set(registered_strategies())  # one branch per strategy, none lost
    writers = {event.produced_by for event in outcome.values["audit"]}
    assert {"regime", "structure", "support_resistance", "fibonacci", "strategy:ema_trend", "strategy:rsi_reversion"} <= writers
    assert set(features.regime.by_timeframe) == set(backend_settings.timeframes)


@pytest.mark.parametrize("answer", ["approve", "reject", "modify"])
async def test_approval_pauses_then_resumes(backend_settings: Settings, answer: str) -> None:
    async with open_storage(backend_settings) as storage:
        runs = Lifecycles(backend_settings, storage)
        paused = await runs.start(request_for(backend_settings, "uptrend", approval="always"))
        assert paused.decision is None and paused.pending is not None
        proposal = paused.pending.proposal
        assert proposal["side"] == "buy" and proposal["quantity"] > 0
        response = ApprovalResponse(
            action=answer, by="alice", reason="test", quantity=proposal["quantity"] / 2 if answer == "modify" else None
        )
        done = await runs.resume(paused.thread_id, response)
    assert done.pending is None
    if answer == "reject":
        assert done.decision.action == "REJECT" and "alice" in done.decision.reason
        assert "orders" not in done.values
    else:
        assert done.decision.action == "BUY"
        filled = done.values["orders"].orders[0].quantity
        expected = proposal["quantity"] / 2 if answer == "modify" else proposal["quantity"]
        assert filled == pytest.approx(expected)
        assert done.values["approval"].by == "alice"


async def test_resume_survives_a_new_saver_on_the_same_database(backend_settings: Settings) -> None:
    async with open_storage(backend_settings) as storage:
        paused = await Lifecycles(backend_settings, storage).start(request_for(backend_settings, "uptrend", approval="always"))
    assert paused.pending is not None
    # Everything in memory is gone: a new saver, a new graph, the same database.
    async with open_storage(backend_settings) as storage:
        runs = Lifecycles(backend_settings, storage)
        reloaded = await runs.outcome(paused.thread_id)
        assert reloaded.pending.interrupt_id == paused.pending.interrupt_id
        done = await runs.resume(paused.thread_id, ApprovalResponse(action="approve", by="bob"))
        with pytest.raises(NotPending):
            await runs.resume(paused.thread_id, ApprovalResponse(action="approve", by="bob"))
    assert done.decision.action == "BUY"


async def test_bad_resume_payload_leaves_the_run_paused(backend_settings: Settings) -> None:
    async with open_storage(backend_settings) as storage:
        runs = Lifecycles(backend_settings, storage)
        paused = await runs.start(request_for(backend_settings, "uptrend", approval="always"))
        from langgraph.types import Command

        with pytest.raises(ValidationError):
            await runs.graph.ainvoke(
                Command(resume={paused.pending.interrupt_id: {"action": "yes please"}}),
                {"configurable": {"thread_id": paused.thread_id}},
                context=runs.services_for(paused.values["request"]),
            )
        still = await runs.outcome(paused.thread_id)
        with pytest.raises(NotPending):
            await runs.resume(paused.thread_id, ApprovalResponse(action="approve"), interrupt_id="not-the-pending-one")
    assert still.pending is not None and still.decision is None


async def test_replay_from_a_past_checkpoint_reproduces_the_decision(backend_settings: Settings) -> None:
    async with open_storage(backend_settings) as storage:
        runs = Lifecycles(backend_settings, storage)
        original = await runs.start(request_for(backend_settings, "uptrend"))
        history = await runs.history(original.thread_id)
        assert history[0].step > history[-1].step  # newest first
        after_market = next(h for h in reversed(history) if "market_data" in h.nodes)
        assert after_market.next == ["data_quality"]
        replayed = await runs.replay(original.thread_id, after_market.checkpoint_id)
        longer = await runs.history(original.thread_id)
    assert replayed.decision.action == original.decision.action == "BUY"
    assert replayed.values["consensus"].net_score == pytest.approx(original.values["consensus"].net_score)
    assert replayed.values["risk"].quantity == pytest.approx(original.values["risk"].quantity)
    assert len(longer) > len(history)  # the replay added a branch, the original checkpoints stay


async def test_malformed_symbol_is_refused_at_the_boundary_and_in_the_graph(backend_settings: Settings) -> None:
    with pytest.raises(ValidationError, match="malformed symbol"):
        make_request(backend_settings, "BTC-USDT!!")
    # A caller that skips the boundary (Studio, a raw invoke) still gets a reasoned REJECT, not a crash.
    async with open_storage(backend_settings) as storage:
        runs = Lifecycles(backend_settings, storage)
        await runs.graph.ainvoke({"request": {"symbol": "nonsense"}}, {"configurable": {"thread_id": "bad-1"}})
        outcome = await runs.outcome("bad-1")
    assert outcome.decision.action == "REJECT" and "invalid request" in outcome.decision.reason


async def test_leveraged_token_is_rejected_by_sanity(backend_settings: Settings) -> None:
    async with open_storage(backend_settings) as storage:
        outcome = await Lifecycles(backend_settings, storage).start(request_for(backend_settings, "uptrend", symbol="BTCUP/USDT"))
    assert outcome.decision.action == "REJECT" and outcome.decision.stage == "sanity"
    assert "market" not in outcome.values


async def test_regime_change_against_the_symbols_previous_run_is_audited(backend_settings: Settings) -> None:
    """The previous regime lives in LangGraph's store (SQLite or Postgres), across threads."""
    from datetime import timedelta

    async with open_storage(backend_settings) as storage:
        runs = Lifecycles(backend_settings, storage)
        first = await runs.start(request_for(backend_settings, "uptrend", symbol="ADA/USDT"))
        later = make_request(backend_settings, "ADA/USDT", scenario="downtrend", as_of=CLOCK + timedelta(hours=6))
        second = await runs.start(later)
        # Replaying the second run's moment sees the same "previous", not itself.
        history = await runs.history(second.thread_id)
        replayed = await runs.replay(second.thread_id, next(h for h in reversed(history) if h.next == ["market_data"]).checkpoint_id)
    assert first.values["features"].regime.previous is None
    assert not any(e.event == "REGIME_CHANGE" for e in first.values["audit"])
    assert second.values["features"].regime.previous == "TRENDING_UP"
    change = [e for e in second.values["audit"] if e.event == "REGIME_CHANGE"]
    assert len(change) == 1 and change[0].verdict == "TRENDING_UP -> TRENDING_DOWN"
    assert replayed.values["features"].regime.previous == "TRENDING_UP"


async def test_alternative_data_slot_says_none_rather_than_inventing(backend_settings: Settings, monkeypatch) -> None:
    from tools import alt_data

    async with open_storage(backend_settings) as storage:
        plain = await Lifecycles(backend_settings, storage).start(request_for(backend_settings, "range"))

        class Funding:
            name = "funding"

            async def fetch(self, symbol: str, as_of: datetime) -> dict[str, float]:
                return {"rate": 0.0001}

        monkeypatch.setitem(alt_data.PROVIDERS, "funding", Funding())
        settings = backend_settings.model_copy(update={"alt_data_providers": ["funding"]})
        fed = await Lifecycles(settings, storage).start(request_for(settings, "range"))
    none = plain.values["features"].alternative
    assert none.available is False and none.values == {} and none.note == "no alternative data configured"
    assert fed.values["features"].alternative.values == {"funding.rate": 0.0001}
