"""L7 risk: position size, portfolio heat, exposure, correlation, volatility and drawdown; any doubt rejects.

The node gathers the book as of the run's clock (monitoring fills and marks
open brackets on the way), hands every figure to the pure rules in
`tools.risk_rules`, and trips the governor when a drawdown breaker is breached.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

from langgraph.runtime import Runtime

from nodes.common import end_run, event, services
from state import AnalysisState
from state.portfolio import PortfolioView, Position, TradeProposal
from state.sections import Check, RiskAssessment, RiskSection, failed_checks
from tools.context import Services
from tools.portfolio import Monitoring, portfolio_view
from tools.risk_rules import assess

NODE = "risk"


def strategy_versions(state: AnalysisState) -> list[str]:
    signals = state.get("signals") or {}
    return [f"{name}@{signals[name].version}" for name in state["consensus"].agreeing if name in signals]


def first_trades(strategies: list[str], book: list[Position]) -> list[str]:
    traded = {name for p in book if p.status != "cancelled" for name in p.strategies}
    return [name for name in strategies if name not in traded]


class Evaluation(NamedTuple):
    proposal: TradeProposal
    view: PortfolioView
    assessment: RiskAssessment
    checks: list[Check]
    book: Monitoring


async def evaluate(state: AnalysisState, context: Services, *, stop: float | None = None) -> Evaluation:
    """Gather the book as of the run's clock and let the rules size the consensus trade (or a modified stop)."""
    consensus, market, request = state["consensus"], state["market"], state["request"]
    settings = context.settings
    features = state.get("features")
    regime = features.regime if features else None
    decision_regime = regime.by_timeframe.get(request.decision_timeframe) if regime else None
    info = await _market_info(context, request.symbol)
    view, book, problems = await portfolio_view(
        ledger=context.ledger,
        brokers=context.brokers or {context.broker.name: context.broker},
        source_for=context.source_for,
        frames=context.frames,
        settings=settings,
        symbol=request.symbol,
        timeframe=request.decision_timeframe,
        fill_timeframe=request.timeframes[0],
        as_of=market.as_of,
    )
    # The consensus may propose less (quarter-Kelly on the track record); never more than the setting.
    fraction = min(settings.risk_per_trade, consensus.kelly_fraction if consensus.kelly_fraction is not None else settings.risk_per_trade)
    proposal = TradeProposal(
        symbol=request.symbol,
        side="buy" if consensus.direction == "LONG" else "sell",
        entry=consensus.entry,
        stop=stop if stop is not None else consensus.stop,
        target=consensus.targets[0] if consensus.targets else None,
        risk_fraction=fraction,
        tags=settings.tags_for(request.symbol),
        atr_pct=decision_regime.atr_pct if decision_regime else None,
        regime=regime.primary if regime else None,
        amount_min=info.amount_min if info else None,
        cost_min=info.cost_min if info else None,
        amount_precision=info.amount_precision if info else None,
    )
    assessment = assess(proposal, view, settings)
    checks = list(assessment.checks)
    if info is None and request.source == "ccxt":
        checks.append(Check(name="exchange_limits", passed=False, detail="the exchange's market limits could not be read"))
    if problems:  # positions whose state is unknown make the portfolio figures unknown: fail closed
        checks.append(Check(name="book_in_sync", passed=False, detail="; ".join(problems)))
    return Evaluation(proposal, view, assessment, checks, book)


def rejection(checks: list[Check]) -> str:
    return "; ".join(f"{c.name} ({c.detail})" for c in failed_checks(checks))


async def risk(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    market, request = state["market"], state["request"]
    context = services(runtime, request)
    proposal, view, assessment, checks, book = await evaluate(state, context)
    audit = []
    if book.tripped:
        audit.append(event(NODE, "SYS_COMMAND", "BREAKER_TRIPPED", market.as_of, {"reason": book.tripped, "drawdowns": view.drawdowns}))
    approved = assessment.approved and not failed_checks(checks)
    section = RiskSection(
        as_of=market.as_of,
        produced_by=NODE,
        approved=approved,
        checks=checks,
        side=proposal.side,
        entry=proposal.entry,
        stop=proposal.stop,
        target=proposal.target,
        quantity=assessment.quantity,
        notional=assessment.notional,
        risk_amount=assessment.risk_amount,
        risk_fraction=assessment.risk_fraction,
        equity=view.equity,
        heat_before=assessment.heat_before,
        heat_after=assessment.heat_after,
        multipliers=assessment.multipliers,
        exposure_after=assessment.exposure_after,
        drawdowns=dict(view.drawdowns),
        tags=proposal.tags,
        first_trade_strategies=first_trades(strategy_versions(state), await context.ledger.positions()),
        decided_at=datetime.now(UTC),
    )
    figures = {"open_positions": len(book.live), "heat_before": assessment.heat_before, "drawdowns": dict(view.drawdowns)}
    if not approved:
        update = end_run(NODE, "REJECT", "risk rejected: " + rejection(checks), market.as_of, kind="ORDER_REQUEST", detail=figures, risk=section)
        update["audit"] = audit + update["audit"]
        return update
    detail = {"side": proposal.side, "quantity": assessment.quantity, "notional": assessment.notional, "risk_amount": assessment.risk_amount, **figures}
    return {"risk": section, "audit": [*audit, event(NODE, "ORDER_REQUEST", "SIZED", market.as_of, detail)]}


async def _market_info(context: Services, symbol: str) -> Any:
    try:
        return await context.source.market_info(symbol)
    except Exception:  # offline sources and outages: the rules then apply the settings' minimum only
        return None
