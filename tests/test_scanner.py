"""The scanner graph on the real savers (SQLite and PostgreSQL) with built-in market data.

Each symbol runs its real lifecycle in its own thread. The only stand-ins are
dispatchers that wrap the real one to make one symbol fail or to halt the
governor part-way, which is how a test can make those things happen on cue.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from api.runs import Lifecycles, make_request
from api.scan import SCREEN_STOP, InProcessDispatcher, Scans, decide_symbol
from graphs.scanner import graph as served_scanner
from state import Settings
from state.scan import ScanEntry, ScanRequest
from tools.governor import Governor
from tools.scan import scan_thread_id
from tools.storage import open_storage

CLOCK = datetime(2026, 11, 20, 13, 37, tzinfo=UTC)


async def decisions(runs: Lifecycles, thread_id: str) -> int:
    return sum(1 for r in await runs.storage.audit.trail(thread_id) if r.node == "audit" and r.event == "DECISION")


async def checkpoints(runs: Lifecycles, thread_id: str) -> int:
    return len([s async for s in runs.graph.aget_state_history({"configurable": {"thread_id": thread_id}})])


class FailingOne(InProcessDispatcher):
    """The real dispatcher, except that one symbol's worker blows up."""

    def __init__(self, runs: Lifecycles, broken: str) -> None:
        super().__init__(runs)
        self.broken = broken

    async def decide(self, request: ScanRequest, symbol: str, as_of: datetime | None) -> ScanEntry:
        if symbol == self.broken:
            raise ConnectionError("worker lost its database connection")
        return await super().decide(request, symbol, as_of)


class HaltsAfter(InProcessDispatcher):
    """The real dispatcher; the operator hits the kill switch once `after` symbols were decided."""

    def __init__(self, runs: Lifecycles, after: int) -> None:
        super().__init__(runs)
        self.after, self.seen = after, 0

    async def decide(self, request: ScanRequest, symbol: str, as_of: datetime | None) -> ScanEntry:
        entry = await super().decide(request, symbol, as_of)
        self.seen += 1
        if self.seen == self.after:
            await Governor(self.runs.storage.ledger, self.runs.storage.audit).halt("drawdown alarm", "erin", self.runs.hub.brokers())
        return entry


async def test_scan_ranks_actionable_first_and_survives_bad_symbols(backend_settings: Settings) -> None:
    async with open_storage(backend_settings) as storage:
        runs = Lifecycles(backend_settings, storage)
        request = ScanRequest(
            scan_id="rank", symbols=["eth/usdt", "BTC/USDT", "not a symbol", "SOL/USDT", "BTC/USDT"], scenario="uptrend", as_of=CLOCK
        )
        heard: list[dict] = []
        summary = await Scans(runs).run(request, FailingOne(runs, "SOL/USDT"), concurrency=2, on_event=heard.append)
        by_symbol = {e.symbol: e for e in summary.ranked}
        assert len(summary.ranked) == 4  # the duplicate BTC/USDT is scanned once
        assert by_symbol["not a symbol"].status == "invalid" and "malformed" in by_symbol["not a symbol"].reason
        assert by_symbol["SOL/USDT"].status == "failed" and "database connection" in by_symbol["SOL/USDT"].reason
        for symbol in ("ETH/USDT", "BTC/USDT"):
            entry = by_symbol[symbol]
            assert entry.actionable and entry.consensus == "LONG" and entry.decision == "BUY"
            assert entry.thread_id == scan_thread_id("rank", symbol)
        assert [e.symbol for e in summary.ranked[2:]] == ["SOL/USDT", "not a symbol"]
        assert summary.ranked[0].confidence >= summary.ranked[1].confidence
        assert summary.counts["decided"] == 2 and summary.counts["decision:BUY"] == 2
        assert [e["symbols"] for e in heard if e["scan"] == "watchlist"] == [3]
        assert sorted(e["entry"]["symbol"] for e in heard if e["scan"] == "symbol") == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
        assert (await Scans(runs).summary("rank")) == summary  # the scan's own thread keeps the summary


async def test_proposals_keep_every_step_and_holds_keep_one_checkpoint(backend_settings: Settings) -> None:
    async with open_storage(backend_settings) as storage:
        runs = Lifecycles(backend_settings, storage)
        scans = Scans(runs)
        buy = (await scans.run(ScanRequest(scan_id="up", symbols=["ETH/USDT"], scenario="uptrend", as_of=CLOCK))).ranked[0]
        hold = (await scans.run(ScanRequest(scan_id="flat", symbols=["ETH/USDT"], scenario="range", as_of=CLOCK))).ranked[0]
        assert buy.decision == "BUY" and hold.decision == "HOLD" and not hold.actionable
        # The proposal was re-run with per-step checkpoints: replayable from any step, forkable.
        assert await checkpoints(runs, buy.thread_id) >= 10
        history = await runs.history(buy.thread_id)
        assert {"input"} < {node for info in history for node in info.nodes}
        # The screened HOLD keeps its final checkpoint only, with every section and the decision.
        assert await checkpoints(runs, hold.thread_id) == 1
        held = await runs.outcome(hold.thread_id)
        assert held.decision.action == "HOLD" and held.values["consensus"] is not None
        # The screening pass of the proposal left no events behind: one of each, not two.
        trail = await storage.audit.trail(buy.thread_id)
        assert Counter((r.node, r.event) for r in trail)[("aggregate", "SIGNAL")] == 1
        assert await decisions(runs, buy.thread_id) == 1 and await decisions(runs, hold.thread_id) == 1
        # Every hold's audit rows point at the one checkpoint that exists.
        assert {r.checkpoint_id for r in await storage.audit.trail(hold.thread_id)} == {
            (await runs.graph.aget_state({"configurable": {"thread_id": hold.thread_id}})).config["configurable"]["checkpoint_id"]
        }
        assert len([p for p in await storage.ledger.positions() if p.thread_id == buy.thread_id]) == 1

        # Actionable consensus that risk refuses (the desk's capital budget is spent) is no trade proposal: no second pass.
        await Governor(storage.ledger, storage.audit).set_budget(1.0, by="erin")
        scan = ScanRequest(scan_id="halted", symbols=["SOL/USDT"], scenario="uptrend", as_of=CLOCK)
        refused = await decide_symbol(runs, scan, "SOL/USDT", CLOCK)
        assert refused.actionable and refused.decision == "REJECT" and refused.stage == "risk"
        assert await checkpoints(runs, refused.thread_id) == 1 and await decisions(runs, refused.thread_id) == 1


async def test_the_commit_pass_takes_the_screens_analysis_and_a_replay_runs_it_again(backend_settings: Settings, monkeypatch) -> None:
    """The analysis of an actionable symbol runs once per decision; its thread still replays every node for real."""
    import graphs.trade_lifecycle as wiring

    calls: Counter[str] = Counter()
    for name in ("anchored_vwap", "strategy", "verify"):
        node = getattr(wiring, name)

        async def counted(state, runtime, node=node, name=name):
            calls[name] += 1
            return await node(state, runtime)

        monkeypatch.setattr(wiring, name, counted)
    async with open_storage(backend_settings) as storage:
        runs = Lifecycles(backend_settings, storage)
        scan = ScanRequest(scan_id="cache", symbols=["ETH/USDT"], scenario="uptrend", as_of=CLOCK)
        entry = await decide_symbol(runs, scan, "ETH/USDT", CLOCK)
        assert entry.decision == "BUY" and entry.actionable
        strategies = calls["strategy"]
        assert calls["anchored_vwap"] == 1 and calls["verify"] == 1 and strategies >= 3
        # The committed thread holds every analysis step, with the sections the screen computed.
        history = await runs.history(entry.thread_id)
        assert {"anchored_vwap", "strategy", "aggregate", "verify"} <= {n for info in history for n in info.nodes}
        trail = await storage.audit.trail(entry.thread_id)
        assert Counter((r.node, r.event) for r in trail)[("aggregate", "SIGNAL")] == 1
        # Outside a scan's scope nothing is cached: a replay from before the levels runs them again.
        before_levels = next(i for i in history if "anchored_vwap" in i.next)
        replayed = await runs.replay(entry.thread_id, before_levels.checkpoint_id)
        assert calls["anchored_vwap"] == 2 and calls["strategy"] == 2 * strategies
        assert replayed.values["consensus"] == (await runs.outcome(entry.thread_id)).values["consensus"]


async def test_a_commit_pass_killed_before_its_events_were_written_gets_them_back(backend_settings: Settings) -> None:
    """The commit pass writes its audit rows at its end; a worker killed before that leaves checkpoints
    without rows, and the redelivered symbol restores them from the checkpoints' writes, once."""
    from api.runs import make_request

    async with open_storage(backend_settings) as storage:
        runs = Lifecycles(backend_settings, storage)
        scan = ScanRequest(scan_id="lost", symbols=["ETH/USDT", "BTC/USDT"], scenario="uptrend", as_of=CLOCK)
        reference = await decide_symbol(runs, scan, "BTC/USDT", CLOCK)
        assert await runs.backfill_events(reference.thread_id) == 0  # a whole record needs nothing

        thread_id = scan_thread_id("lost", "ETH/USDT")
        request = make_request(backend_settings, "ETH/USDT", scenario="uptrend", as_of=CLOCK)
        # Stopped ahead of execution, a batched run drops its rows: exactly what a kill there leaves.
        await runs.start(
            request, thread_id=thread_id, metadata={"scan_id": "lost", "scan_phase": "commit"}, stop_before=["execute"], batch_events=True
        )
        assert await storage.audit.trail(thread_id) == []
        entry = await decide_symbol(runs, scan, "ETH/USDT", CLOCK)
        assert entry.decision == "BUY" and await decisions(runs, thread_id) == 1

        def steps(trail):
            # Which node wrote what (another symbol's verdicts may differ; the sections each step changed do not).
            return Counter((r.node, r.event, r.verdict if r.event == "STATE_CHANGE" else "") for r in trail if r.event != "PROGRESS")

        restored, whole = await storage.audit.trail(thread_id), await storage.audit.trail(reference.thread_id)
        assert steps(restored) == steps(whole)  # every step's rows, none twice
        history = {info.checkpoint_id for info in await runs.history(thread_id)}
        assert {r.checkpoint_id for r in restored} <= history
        assert (await storage.audit.verify()).intact


async def test_deciding_again_never_decides_twice(backend_settings: Settings) -> None:
    """A symbol delivered again (a worker died after deciding, or mid-way) ends with one decision and one order."""
    async with open_storage(backend_settings) as storage:
        runs = Lifecycles(backend_settings, storage)
        scan = ScanRequest(scan_id="again", symbols=["ETH/USDT"], scenario="uptrend", as_of=CLOCK)
        first = await decide_symbol(runs, scan, "ETH/USDT", CLOCK)
        again = await decide_symbol(runs, scan, "ETH/USDT", CLOCK)
        assert first.decision == again.decision == "BUY" and again.thread_id == first.thread_id
        assert await decisions(runs, first.thread_id) == 1

        # A commit pass cut short before execution (the worker was killed there) is carried on, not restarted.
        from api.runs import make_request

        thread_id = scan_thread_id("again", "BTC/USDT")
        request = make_request(backend_settings, "BTC/USDT", scenario="uptrend", as_of=CLOCK)
        await runs.start(request, thread_id=thread_id, metadata={"scan_id": "again", "scan_phase": "commit"}, stop_before=["execute"])
        steps_before = await checkpoints(runs, thread_id)
        resumed = await decide_symbol(runs, scan, "BTC/USDT", CLOCK)
        assert resumed.decision == "BUY" and await checkpoints(runs, thread_id) > steps_before
        assert await decisions(runs, thread_id) == 1

        # A screen that stopped before the approval but never committed is screened again from scratch.
        thread_id = scan_thread_id("again", "SOL/USDT")
        request = make_request(backend_settings, "SOL/USDT", scenario="uptrend", as_of=CLOCK)
        await runs.start(request, thread_id=thread_id, durability="exit", metadata={"scan_phase": "screen"}, stop_before=SCREEN_STOP)
        redone = await decide_symbol(runs, scan, "SOL/USDT", CLOCK)
        assert redone.decision == "BUY" and await decisions(runs, thread_id) == 1
        trail = await storage.audit.trail(thread_id)
        assert Counter((r.node, r.event) for r in trail)[("aggregate", "SIGNAL")] == 1

        # Killed between claiming the symbol's thread (its run row) and the screen's checkpoint: screened again.
        thread_id = scan_thread_id("again", "ADA/USDT")
        assert await storage.ledger.claim_run(thread_id, "ADA/USDT") and not await storage.ledger.claim_run(thread_id, "ADA/USDT")
        claimed = await decide_symbol(runs, scan, "ADA/USDT", CLOCK)
        assert claimed.status == "decided" and claimed.decision and await decisions(runs, thread_id) == 1
        assert (await storage.ledger.run(thread_id))["status"] == "done"
        positions = Counter(p.thread_id for p in await storage.ledger.positions())
        assert all(count == 1 for count in positions.values()) and len(positions) == 3 + (claimed.decision == "BUY")


async def test_a_halt_stops_dispatching_and_running_lifecycles_hold(make_settings) -> None:
    settings = make_settings()
    async with open_storage(settings) as storage:
        runs = Lifecycles(settings, storage)
        symbols = [f"SYN{i:04d}/USDT" for i in range(1, 9)]
        request = ScanRequest(scan_id="halt", symbols=symbols, scenario="uptrend", as_of=CLOCK)
        summary = await Scans(runs).run(request, HaltsAfter(runs, after=2), concurrency=1)
        statuses = Counter(e.status for e in summary.ranked)
        assert summary.halted and summary.halt_reason == "drawdown alarm"
        assert statuses["decided"] == 2 and statuses["skipped"] == 6
        skipped = [e for e in summary.ranked if e.status == "skipped"]
        assert all("halted" in e.reason for e in skipped)
        for entry in skipped:  # nothing ran for them: no checkpoint; no run row, or one that says it never started
            thread_id = scan_thread_id("halt", entry.symbol)
            assert await storage.last_checkpoint_id(thread_id) is None
            row = await storage.ledger.run(thread_id)
            assert row is None or (row["status"] == "skipped" and "not started" in row["reason"])

        # A lifecycle already running when the halt lands ends without an order.
        running = await runs.start(make_request(settings, "ETH/USDT", scenario="uptrend", as_of=CLOCK))
        assert running.decision.action in ("HOLD", "REJECT") and "halt" in running.decision.reason.lower()
        assert not [p for p in await storage.ledger.positions() if p.thread_id == running.thread_id]

        # A symbol handed to a worker that had not started it when the halt landed never starts; its run row
        # says why (a distributed scan's coordinator reads it there).
        queued = await decide_symbol(runs, ScanRequest(scan_id="halted-queue", symbols=["ETH/USDT"], as_of=CLOCK), "ETH/USDT", CLOCK)
        assert queued.status == "skipped" and "halted" in queued.reason and "drawdown alarm" in queued.reason
        assert (await storage.ledger.run(queued.thread_id))["status"] == "skipped"
        assert await storage.last_checkpoint_id(queued.thread_id) is None
        # One decided before the halt and delivered again reports what it decided.
        decided = next(e for e in summary.ranked if e.status == "decided")
        again = await decide_symbol(runs, request, decided.symbol, CLOCK)
        assert again.status == "decided" and again.decision == decided.decision and again.thread_id == decided.thread_id


async def test_top_n_scans_the_most_traded_usdt_markets(make_settings) -> None:
    settings = make_settings()
    async with open_storage(settings) as storage:
        runs = Lifecycles(settings, storage)
        summary = await Scans(runs).run(ScanRequest(scan_id="top", top=4, as_of=CLOCK, timeframes=["1h", "4h", "1d"]))
        from tools.market_data.builtin import builtin_markets

        usdt = sorted((m for m in builtin_markets() if m.quote == "USDT"), key=lambda m: -m.quote_volume_24h)
        assert sorted(e.symbol for e in summary.ranked) == sorted(m.symbol for m in usdt[:4])
        assert all(e.status == "decided" for e in summary.ranked)


async def test_the_served_scanner_runs_without_our_context() -> None:
    """What `langgraph dev` runs: no ScanServices, no database; symbols decided in-process on defaults."""
    result = await served_scanner.ainvoke(
        {"request": ScanRequest(scan_id="studio", symbols=["BTC/USDT", "ETH/USDT"], scenario="range", as_of=CLOCK)}
    )
    assert sorted(e.symbol for e in result["summary"].ranked) == ["BTC/USDT", "ETH/USDT"]
    assert {e.decision for e in result["summary"].ranked} == {"HOLD"}
