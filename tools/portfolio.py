"""Monitoring and the portfolio view: positions brought up to the clock, and the figures risk judges by.

Every risk check reads the book as of the run's clock: open brackets are first
filled or marked against the candles since they were last seen, then turned
into exposures, correlations and drawdowns. Nothing here decides; the rules
in `tools.risk_rules` do.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

import pandas as pd
from pydantic import BaseModel

from state import Settings
from state.portfolio import Exposure, Position, PortfolioView
from tools.brokers.base import Broker
from tools.frames import FrameCache
from tools.ledger import Ledger
from tools.market_data.base import MarketDataSource
from tools.governor import Governor
from tools.risk_rules import breached_breakers, drawdowns, returns_correlation
from tools.timeframes import period

MAX_CANDLES_PER_FETCH = 1000


async def candles_since(source: MarketDataSource, symbol: str, timeframe: str, since: datetime, until: datetime) -> pd.DataFrame:
    """Every candle from `since` to `until`, in windows the source can serve."""
    step = period(timeframe)
    frames, start = [], since - step  # the candle open at `since` - one period has closed by `since`
    while start < until:
        end = min(until, start + step * MAX_CANDLES_PER_FETCH)
        needed = min(MAX_CANDLES_PER_FETCH, math.ceil((end - start) / step) + 1)
        frame = await source.fetch_candles(symbol, timeframe, until=end, limit=needed)
        frames.append(frame[frame.index >= pd.Timestamp(start)])
        start = end
    candles = pd.concat(frames) if frames else pd.DataFrame()
    return candles[~candles.index.duplicated(keep="last")].sort_index() if len(candles) else candles


SourceFor = Callable[[Position], MarketDataSource]


async def sync_positions(
    ledger: Ledger, brokers: Mapping[str, Broker], source_for: SourceFor, timeframe: str, until: datetime
) -> tuple[list[Position], list[str]]:
    """Fill and mark every pending or open bracket up to `until`; returns them and what could not be synced."""

    async def one(position: Position) -> tuple[Position, str | None]:
        broker = brokers.get(position.broker)
        if broker is None:
            return position, f"{position.bracket_id}: broker {position.broker} not reachable here, last known state used"
        try:
            since = position.marked_at or position.created_at
            candles = await candles_since(source_for(position), position.symbol, timeframe, since, until)
            return await broker.sync(position, candles), None
        except Exception as error:  # a symbol's data failing leaves its last known state, flagged
            return position, f"{position.bracket_id}: {error}"

    # The book's symbols are independent: their candles are fetched side by side, not one after another.
    results = await asyncio.gather(*(one(p) for p in await ledger.live_positions()))
    return [position for position, _ in results], [problem for _, problem in results if problem]


def period_starts(now: datetime) -> dict[str, datetime]:
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return {"daily": day, "weekly": day - timedelta(days=day.weekday()), "monthly": day.replace(day=1)}


async def equity_and_drawdowns(ledger: Ledger, settings: Settings, live: list[Position], now: datetime) -> tuple[float, dict[str, float]]:
    """Current equity (start + realized + unrealized) and the drawdown of each breaker period."""
    earliest = min(period_starts(now).values())
    closed = await ledger.positions(statuses=("closed",))
    before = sum(p.realized_pnl or 0.0 for p in closed if p.closed_at is not None and p.closed_at < earliest)
    recent = [(p.closed_at, p.realized_pnl or 0.0) for p in closed if p.closed_at is not None and p.closed_at >= earliest]
    unrealized = sum(p.unrealized_pnl or 0.0 for p in live if p.status == "open")
    start = settings.account_equity + before
    equity = start + sum(pnl for _, pnl in recent) + unrealized
    return equity, drawdowns(start, recent, unrealized, now)


async def correlations(frames: FrameCache, symbol: str, others: list[str], timeframe: str, as_of: datetime, window: int) -> dict[str, float | None]:
    async def closes(name: str) -> pd.Series | None:
        try:
            return (await frames.get(name, timeframe, as_of)).frame["close"]
        except Exception:  # unmeasurable: the rules treat a missing correlation as a reason to reject
            return None

    series = await asyncio.gather(closes(symbol), *(closes(o) for o in others))
    own, rest = series[0], series[1:]
    result: dict[str, float | None] = {}
    for other, theirs in zip(others, rest, strict=True):
        value = returns_correlation(own, theirs, window) if own is not None and theirs is not None else None
        result[other] = value if value is None or math.isfinite(value) else None
    return result


class Monitoring(BaseModel):
    live: list[Position]
    problems: list[str]
    equity: float
    drawdowns: dict[str, float]
    tripped: str = ""  # the breaker reason, when this pass halted the governor


async def monitor(
    ledger: Ledger, brokers: Mapping[str, Broker], source_for: SourceFor, timeframe: str, now: datetime, settings: Settings
) -> Monitoring:
    """Fill and mark the book up to `now`, measure drawdowns, and trip the governor when a breaker is breached."""
    synced, problems = await sync_positions(ledger, brokers, source_for, timeframe, now)
    live = [p for p in synced if p.is_live]
    equity, periods = await equity_and_drawdowns(ledger, settings, live, now)
    tripped = ""
    breached = breached_breakers(periods, settings)
    if breached and not (await ledger.governor()).halted:
        tripped = "drawdown breaker: " + ", ".join(breached)
        await Governor(ledger).halt(tripped, "breaker", brokers)
    return Monitoring(live=live, problems=problems, equity=equity, drawdowns=periods, tripped=tripped)


async def portfolio_view(
    *,
    ledger: Ledger,
    brokers: Mapping[str, Broker],
    source_for: SourceFor,
    frames: FrameCache,
    settings: Settings,
    symbol: str,
    timeframe: str,
    fill_timeframe: str,
    as_of: datetime,
) -> tuple[PortfolioView, Monitoring, list[str]]:
    book = await monitor(ledger, brokers, source_for, fill_timeframe, as_of, settings)
    live, problems, equity, periods = book.live, book.problems, book.equity, book.drawdowns
    governor = await ledger.governor()  # after monitoring: a breaker it tripped counts for this run too
    exposures = [
        Exposure(symbol=p.symbol, side=p.side, notional=p.notional(), risk_amount=p.open_risk(), tags=p.tags) for p in live
    ]
    others = sorted({p.symbol for p in live if p.symbol != symbol})
    view = PortfolioView(
        equity=max(equity, 1e-9),
        open=exposures,
        correlations=await correlations(frames, symbol, others, timeframe, as_of, settings.correlation_window),
        drawdowns=periods,
        capital_budget=governor.capital_budget,
        halted=governor.halted,
        halt_reason=governor.reason,
    )
    return view, book, problems
