"""What the cockpit page shows, gathered from the book and the runs: the risk dashboard, the heatmap, a run's chart.

Each view is a pydantic model, so the page and the CLI read the same figures.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from api.runs import Lifecycles, RunNotFound
from state.portfolio import GovernorState, Position
from state.sections import RunRequest
from tools.portfolio import monitor

CHART_BARS = 150
SIGN = {"LONG": 1.0, "SHORT": -1.0}


class EquityPoint(BaseModel):
    at: datetime
    equity: float


class PortfolioReport(BaseModel):
    equity: float
    start_equity: float
    realized: float
    unrealized: float
    equity_curve: list[EquityPoint]
    drawdowns: dict[str, float]
    drawdown_limits: dict[str, float]
    heat: float  # open risk at the stops, fraction of equity
    heat_cap: float
    exposure: dict[str, dict[str, float]]  # by symbol / tag / direction: notional as a fraction of equity
    exposure_caps: dict[str, float]
    governor: GovernorState
    open: list[Position]
    closed: list[Position]
    problems: list[str]
    tripped: str = ""


async def portfolio_report(runs: Lifecycles, now: datetime | None = None) -> PortfolioReport:
    """The book filled and marked up to now on each position's own market, with every risk figure against its limit."""
    settings, ledger = runs.settings, runs.storage.ledger
    now = now or datetime.now(UTC)
    book = await monitor(ledger, runs.hub.brokers(), runs.hub.position_source, settings.timeframes[0], now, settings)
    live = [p for p in book.live if p.is_live]
    closed = await ledger.positions(statuses=("closed",))
    realized = sum(p.realized_pnl or 0.0 for p in closed)
    unrealized = sum(p.unrealized_pnl or 0.0 for p in live if p.status == "open")
    equity = max(book.equity, 1e-9)
    curve, running = [], settings.account_equity
    for position in sorted((p for p in closed if p.closed_at), key=lambda p: p.closed_at):
        running += position.realized_pnl or 0.0
        curve.append(EquityPoint(at=position.closed_at, equity=running))
    curve.append(EquityPoint(at=now, equity=book.equity))
    exposure: dict[str, dict[str, float]] = {"symbol": defaultdict(float), "tag": defaultdict(float), "direction": defaultdict(float)}
    for position in live:
        share = position.notional() / equity
        exposure["symbol"][position.symbol] += share
        exposure["direction"][position.side] += share
        for tag in position.tags:
            exposure["tag"][tag] += share
    return PortfolioReport(
        equity=book.equity,
        start_equity=settings.account_equity,
        realized=realized,
        unrealized=unrealized,
        equity_curve=curve,
        drawdowns=book.drawdowns,
        drawdown_limits=settings.drawdown_limits,
        heat=sum(p.open_risk() for p in live) / equity,
        heat_cap=settings.max_portfolio_heat,
        exposure={kind: dict(values) for kind, values in exposure.items()},
        exposure_caps={"symbol": settings.max_symbol_exposure, "tag": settings.max_tag_exposure, "direction": settings.max_direction_exposure},
        governor=await ledger.governor(),
        open=live,
        closed=closed,
        problems=book.problems,
        tripped=book.tripped,
    )


class HeatmapRow(BaseModel):
    symbol: str
    thread_id: str
    as_of: str | None
    signals: dict[str, float]  # strategy -> signed confidence (+ long, - short, 0 flat)
    consensus: float | None
    consensus_direction: str | None
    action: str | None


class Heatmap(BaseModel):
    strategies: list[str]
    rows: list[HeatmapRow]


def _get(section: Any, key: str) -> Any:
    return section.get(key) if isinstance(section, dict) else getattr(section, key, None)


async def heatmap(runs: Lifecycles, *, limit: int = 200) -> Heatmap:
    """The latest run of each symbol: every strategy's signed confidence and the consensus."""
    latest: dict[str, dict[str, Any]] = {}
    for row in await runs.storage.ledger.runs(limit=limit):
        if row["symbol"] not in latest and row["status"] in ("done", "paused"):
            latest[str(row["symbol"])] = row
    rows, strategies = [], set()
    for symbol, row in sorted(latest.items()):
        try:
            values = (await runs.outcome(str(row["thread_id"]))).values
        except RunNotFound:
            continue
        signals = {
            name: SIGN.get(str(_get(signal, "direction")), 0.0) * float(_get(signal, "confidence") or 0.0)
            for name, signal in (values.get("signals") or {}).items()
            if not _get(signal, "shadow") and not _get(signal, "error")
        }
        strategies.update(signals)
        consensus = values.get("consensus")
        rows.append(
            HeatmapRow(
                symbol=symbol,
                thread_id=str(row["thread_id"]),
                as_of=str(_get(values.get("market"), "as_of")) if values.get("market") else None,
                signals=signals,
                consensus=SIGN.get(str(_get(consensus, "direction")), 0.0) * float(_get(consensus, "confidence") or 0.0) if consensus else None,
                consensus_direction=_get(consensus, "direction") if consensus else None,
                action=row["action"],
            )
        )
    return Heatmap(strategies=sorted(strategies), rows=rows)


class Candle(BaseModel):
    time: int  # epoch seconds, what the chart library expects
    open: float
    high: float
    low: float
    close: float


class Overlay(BaseModel):
    price: float
    kind: str  # confluence, support, resistance, vwap, golden_pocket, entry, stop, target
    title: str


class Chart(BaseModel):
    thread_id: str
    symbol: str
    timeframe: str
    as_of: datetime | None
    candles: list[Candle]
    overlays: list[Overlay]


def chart_overlays(values: dict[str, Any], timeframe: str) -> list[Overlay]:
    """The levels the run found and the order it proposed, as horizontal lines on the decision timeframe."""
    overlays: list[Overlay] = []
    levels = values.get("levels")
    if levels is not None:
        if levels.confluence:
            for zone in levels.confluence.zones[:6]:
                overlays.append(Overlay(price=(zone.low + zone.high) / 2, kind="confluence", title=f"confluence {zone.score:.1f}"))
        if levels.support_resistance:
            for level in levels.support_resistance.levels:
                if level.timeframe == timeframe:
                    overlays.append(Overlay(price=level.price, kind=level.kind if level.kind in ("support", "resistance") else "level", title=level.kind))
        if levels.anchored_vwap and timeframe in levels.anchored_vwap.by_timeframe:
            for vwap in levels.anchored_vwap.by_timeframe[timeframe].vwaps:
                overlays.append(Overlay(price=vwap.value, kind="vwap", title=f"AVWAP {vwap.anchor_kind.replace('_', ' ')}"))
        if levels.fibonacci and timeframe in levels.fibonacci.by_timeframe:
            low, high = levels.fibonacci.by_timeframe[timeframe].golden_pocket
            overlays += [Overlay(price=low, kind="golden_pocket", title="GP 0.65"), Overlay(price=high, kind="golden_pocket", title="GP 0.618")]
    # The order risk sized, else the consensus' idea of it (a run that held still shows what it weighed).
    risk, consensus = values.get("risk"), values.get("consensus")
    order = {
        "entry": (risk.entry if risk else None) or (consensus.entry if consensus else None),
        "stop": (risk.stop if risk else None) or (consensus.stop if consensus else None),
        "target": (risk.target if risk else None) or (consensus.targets[0] if consensus and consensus.targets else None),
    }
    overlays += [Overlay(price=price, kind=kind, title=kind) for kind, price in order.items() if price]
    return overlays


async def run_chart(runs: Lifecycles, thread_id: str, *, bars: int = CHART_BARS) -> Chart:
    values = (await runs.outcome(thread_id)).values
    request = RunRequest.model_validate(values["request"])
    market = values.get("market")
    as_of = market.as_of if market is not None else request.as_of
    if as_of is None:
        raise RunNotFound(f"run {thread_id} has no market data to chart")
    loaded = await runs.services_for(request).frames.get(request.symbol, request.decision_timeframe, as_of)
    frame = loaded.frame.tail(bars)
    candles = [
        Candle(time=int(index.timestamp()), open=row.open, high=row.high, low=row.low, close=row.close)
        for index, row in zip(frame.index, frame.itertuples(index=False), strict=True)
    ]
    return Chart(
        thread_id=thread_id,
        symbol=request.symbol,
        timeframe=request.decision_timeframe,
        as_of=as_of,
        candles=candles,
        overlays=chart_overlays(values, request.decision_timeframe),
    )
