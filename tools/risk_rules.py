"""L7 risk rules: size one trade and judge it against the portfolio, as pure functions (no I/O).

Everything fails closed: a missing or non-finite input rejects the trade, it is never
defaulted. The size starts at ``equity x risk fraction x volatility x correlation`` at
the stop and is then only ever shrunk (heat, symbol, tag, direction, budget, leverage
room, exchange step); the final checks re-verify the caps on the finished figures.

Correlation rule: the *effective* correlation of the new trade with an open position is
``+corr`` when both are on the same side and ``-corr`` when on opposite sides, because
only then do both lose together (long A + long B with corr > 0, or long A + short B with
corr < 0). Same-side negative and opposite-side positive correlations hedge and count as
nothing. The largest effective correlation over the open positions (the proposal's own
symbol excluded: symbol exposure limits that) drives the scaling; with no other open
symbol there is nothing to scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from state.portfolio import Exposure, PortfolioView, TradeProposal
from state.sections import Check, RiskAssessment, failed_checks, is_finite
from state.settings import MAX_RISK_PER_TRADE, Settings

# A stop closer than this to the entry sits inside the noise and would size absurdly large.
MIN_STOP_DISTANCE = 0.001
# Scaling for volatility or correlation never goes below a quarter of the size: past that, reject.
MIN_MULTIPLIER = 0.25
MIN_CORRELATION_RETURNS = 20
# quantity x price can land an ulp above the limit it was sized to; that much is not a breach.
TOLERANCE = 1e-9

# A limit on the open book: (limit, already used, use per unit of the new trade).
Room = tuple[float, float, float]


def volatility_multiplier(atr_pct: float | None, settings: Settings) -> float | None:
    """Full size at the target ATR %, proportionally less above it, at least 0.25.

    None = no new order: volatility is extreme, or the ATR is missing or not positive.
    """
    if atr_pct is None or not is_finite(atr_pct) or atr_pct <= 0 or atr_pct >= settings.volatility_extreme_atr_pct:
        return None
    return min(1.0, max(MIN_MULTIPLIER, settings.volatility_target_atr_pct / atr_pct))


def correlated_exposure(symbol: str, side: str, portfolio: PortfolioView) -> tuple[float | None, list[str]]:
    """The largest effective correlation with the open book (None: nothing to compare) and
    the open symbols whose correlation is missing or invalid (any of them must reject)."""
    effective: list[float] = []
    missing: set[str] = set()
    for position in portfolio.open:
        if position.symbol == symbol:
            continue
        corr = portfolio.correlations.get(position.symbol)
        if corr is None or not is_finite(corr) or abs(corr) > 1 + TOLERANCE:
            missing.add(position.symbol)
            continue
        effective.append(corr if position.side == side else -corr)
    return max(effective, default=None), sorted(missing)


def correlation_multiplier(correlation: float | None, settings: Settings) -> float | None:
    """1.0 up to ``correlation_scale_above``, falling linearly to 0.25 at ``correlation_reject_above``.

    None = reject (at or above the reject level, or not a number). No correlation at all = 1.0.
    """
    if correlation is None:
        return 1.0
    scale, reject = settings.correlation_scale_above, settings.correlation_reject_above
    if not is_finite(correlation) or correlation >= reject:
        return None
    if correlation <= scale:
        return 1.0
    # Here scale < correlation < reject, so the span is positive.
    return 1.0 - (1.0 - MIN_MULTIPLIER) * (correlation - scale) / (reject - scale)


def breached_breakers(drawdowns: Mapping[str, float], settings: Settings) -> list[str]:
    """Periods whose measured drawdown reached its limit: the governor halts on these.

    A missing or non-finite figure is not a measured breach; `assess` rejects on it instead,
    so a gap in the ledger stops one trade rather than the whole installation.
    """
    return [
        period
        for period, limit in settings.drawdown_limits.items()
        if (value := drawdowns.get(period)) is not None and is_finite(value) and value >= limit
    ]


def _utc(moment: datetime) -> datetime:
    # Naive times are taken as UTC (the ledger's convention), never as the host's local time.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def period_starts(now: datetime) -> dict[str, datetime]:
    """UTC midnight today, Monday 00:00 UTC this week, the 1st 00:00 UTC this month."""
    midnight = _utc(now).replace(hour=0, minute=0, second=0, microsecond=0)
    return {"daily": midnight, "weekly": midnight - timedelta(days=midnight.weekday()), "monthly": midnight.replace(day=1)}


def drawdowns(equity_start: float, realized: Iterable[tuple[datetime, float]], unrealized: float, now: datetime) -> dict[str, float]:
    """Drawdown per period: (peak of the realized equity curve within the period, the equity
    at its start included, minus current equity with unrealized P&L) / peak, floored at 0.

    Trades closed after ``now`` are ignored (a replay judges by its own clock). A non-finite
    input gives NaN, which `assess` rejects; an equity curve at or below zero gives 1.0.
    """
    clock = _utc(now)
    trades = sorted((t, pnl) for t, pnl in ((_utc(t), float(pnl)) for t, pnl in realized) if t <= clock)
    current = equity_start + math.fsum(pnl for _, pnl in trades) + unrealized
    result: dict[str, float] = {}
    for period, start in period_starts(clock).items():
        equity = equity_start + math.fsum(pnl for t, pnl in trades if t < start)
        peak = equity
        for t, pnl in trades:
            if t >= start:
                equity += pnl
                peak = max(peak, equity)
        if not is_finite(peak, current):
            result[period] = math.nan
        else:
            result[period] = 1.0 if peak <= 0 else max(0.0, (peak - current) / peak)
    return result


def returns_correlation(a: pd.Series, b: pd.Series, window: int) -> float | None:
    """Pearson correlation of the last ``window`` simple returns of two close series, aligned
    on their common index first (so both returns span the same interval). None when fewer
    than 20 returns remain or either series does not move."""
    if a.index.equals(b.index) and a.index.is_unique and a.index.is_monotonic_increasing:
        # Candles of one timeframe up to one clock: already aligned, so skip the pandas join (~1 ms).
        pair = np.vstack((a.to_numpy(dtype=float), b.to_numpy(dtype=float)))
    else:
        closes = pd.concat([s[~s.index.duplicated(keep="last")] for s in (a, b)], axis=1, join="inner").sort_index()
        pair = closes.to_numpy(dtype=float).T
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = pair[:, 1:] / pair[:, :-1] - 1
    # Returns where either is undefined or infinite are dropped, then the last `window` are kept.
    finite = returns[:, np.isfinite(returns).all(axis=0)]
    recent = finite[:, finite.shape[1] - min(max(window, 0), finite.shape[1]) :]
    if recent.shape[1] < MIN_CORRELATION_RETURNS:
        return None
    x, y = np.ascontiguousarray(recent[0]), np.ascontiguousarray(recent[1])
    # Constant (or geometric, up to float noise) returns have no variance to correlate.
    if np.std(x) < 1e-12 or np.std(y) < 1e-12:
        return None
    r = float(np.corrcoef(x, y)[0, 1])
    return max(-1.0, min(1.0, r)) if math.isfinite(r) else None


def _used(book: list[Exposure], keep: Callable[[Exposure], bool]) -> float:
    return math.fsum(position.notional for position in book if keep(position))


def _rooms(proposal: TradeProposal, portfolio: PortfolioView, settings: Settings, entry: float, distance: float) -> dict[str, Room]:
    equity, book = portfolio.equity, portfolio.open
    rooms: dict[str, Room] = {
        "heat_room": (settings.max_portfolio_heat * equity, math.fsum(p.risk_amount for p in book), distance),
        "symbol_room": (settings.max_symbol_exposure * equity, _used(book, lambda p: p.symbol == proposal.symbol), entry),
        "direction_room": (settings.max_direction_exposure * equity, _used(book, lambda p: p.side == proposal.side), entry),
        # No leverage: the trade alone may not cost more than the account holds.
        "leverage_room": (equity, 0.0, entry),
    }
    for tag in dict.fromkeys(proposal.tags):
        rooms[f"tag_room:{tag}"] = (settings.max_tag_exposure * equity, _used(book, lambda p, t=tag: t in p.tags), entry)
    if portfolio.capital_budget is not None:
        rooms["budget_room"] = (portfolio.capital_budget, _used(book, lambda p: True), entry)
    return rooms


def floor_to_step(quantity: float, step: float) -> float:
    # Decimal, so 0.3 / 0.1 floors to 3 steps and not 2; the result never exceeds `quantity`.
    exact_step = Decimal(repr(step))
    return float((Decimal(repr(quantity)) // exact_step) * exact_step)


def _missing_inputs(proposal: TradeProposal, portfolio: PortfolioView) -> list[str]:
    named = {"entry": proposal.entry, "stop": proposal.stop, "target": proposal.target, "atr_pct": proposal.atr_pct,
             "equity": portfolio.equity, "risk_fraction": proposal.risk_fraction}
    missing = [name for name, value in named.items() if value is None or not is_finite(value)]
    optional = {"amount_min": proposal.amount_min, "cost_min": proposal.cost_min, "capital_budget": portfolio.capital_budget}
    missing += [name for name, value in optional.items() if value is not None and not (is_finite(value) and value >= 0)]
    step = proposal.amount_precision
    if step is not None and not (is_finite(step) and step > 0):
        missing.append("amount_precision")
    if not all(is_finite(p.notional, p.risk_amount) for p in portfolio.open):
        missing.append("open book figures")
    return missing


def assess(proposal: TradeProposal, portfolio: PortfolioView, settings: Settings) -> RiskAssessment:
    """Size the proposal and run every rule; approved only when no check failed."""
    checks: list[Check] = []
    levels = {str(period): value for period, value in portfolio.drawdowns.items()}
    figures: dict[str, Any] = {"drawdowns": levels}

    def check(name: str, passed: bool, detail: str) -> bool:
        checks.append(Check(name=name, passed=passed, detail=detail))
        return passed

    def verdict() -> RiskAssessment:
        return RiskAssessment(approved=not failed_checks(checks), checks=checks, **figures)

    check("governor", not portfolio.halted, f"halted: {portfolio.halt_reason or 'no reason given'}" if portfolio.halted else "running")
    missing = _missing_inputs(proposal, portfolio)
    check("inputs_present", not missing, f"missing or invalid: {', '.join(missing)}" if missing else "all present")
    equity = portfolio.equity
    heat = math.fsum(p.risk_amount for p in portfolio.open)
    if is_finite(heat, equity):
        figures["heat_before"] = heat / equity
    fraction = min(proposal.risk_fraction, settings.risk_per_trade, MAX_RISK_PER_TRADE)
    check("risk_fraction", is_finite(fraction) and fraction > 0,
          f"{fraction:.4%} (proposed {proposal.risk_fraction}, setting {settings.risk_per_trade}, cap {MAX_RISK_PER_TRADE})")
    check("direction_allowed", proposal.side == "buy" or settings.allow_short, f"{proposal.side}; allow_short={settings.allow_short}")
    entry, stop, target = proposal.entry, proposal.stop, proposal.target
    distance = 0.0
    if entry is not None and stop is not None and target is not None and is_finite(entry, stop, target):
        sign = 1.0 if proposal.side == "buy" else -1.0
        ordered = entry > 0 and sign * (entry - stop) > 0 and sign * (target - entry) > 0
        check("stop_placement", ordered, f"{proposal.side}: stop {stop}, entry {entry}, target {target}")
        distance = abs(entry - stop)
        check("stop_distance", entry > 0 and distance / entry >= MIN_STOP_DISTANCE,
              f"{distance / entry if entry > 0 else math.nan:.4%} of entry (minimum {MIN_STOP_DISTANCE:.2%})")
    for period, limit in settings.drawdown_limits.items():
        value = levels.get(period)
        ok = value is not None and is_finite(value) and value < limit
        check(f"drawdown_{period}", ok, f"{value if value is None else f'{value:.2%}'} vs limit {limit:.2%}")
    atr = proposal.atr_pct
    vol_mult = volatility_multiplier(atr, settings)
    why = "" if vol_mult is not None else ": extreme volatility: new orders halted" if atr and atr > 0 else ": ATR missing or not positive"
    vol_limits = f"target {settings.volatility_target_atr_pct}%, extreme {settings.volatility_extreme_atr_pct}%"
    check("volatility", vol_mult is not None, f"ATR {atr}% ({vol_limits}){why}")
    worst, unmeasured = correlated_exposure(proposal.symbol, proposal.side, portfolio)
    corr_mult = correlation_multiplier(worst, settings) if not unmeasured else None
    corr_limits = f"scale above {settings.correlation_scale_above}, reject at {settings.correlation_reject_above}"
    check("correlation", corr_mult is not None,
          f"no correlation measured with {', '.join(unmeasured)}" if unmeasured
          else f"max effective {'none (no other open symbol)' if worst is None else f'{worst:.3f}'} ({corr_limits})")
    if failed_checks(checks) or entry is None or vol_mult is None or corr_mult is None:
        return verdict()

    multipliers = {"volatility": vol_mult, "correlation": corr_mult}
    sized = equity * fraction * vol_mult * corr_mult / distance
    quantity = sized
    rooms = _rooms(proposal, portfolio, settings, entry, distance)
    for name, (limit, used, per_unit) in rooms.items():
        room = (limit - used) / per_unit
        if check(name, room > 0, f"limit {limit:.2f}, used {used:.2f}, room {room:.6g} units vs {sized:.6g} sized"):
            multipliers[name] = min(1.0, room / sized)
            quantity = min(quantity, room)
    figures["multipliers"] = multipliers
    if failed_checks(checks):
        return verdict()

    if proposal.amount_precision is not None:
        quantity = floor_to_step(quantity, proposal.amount_precision)
    notional, risk_amount = quantity * entry, quantity * distance
    amount_min = proposal.amount_min or 0.0
    cost_min = max(proposal.cost_min or 0.0, settings.min_notional)
    check("amount_min", quantity > 0 and quantity >= amount_min,
          f"{quantity:.10g} units (step {proposal.amount_precision}) vs minimum {amount_min:.10g}")
    check("min_notional", notional >= cost_min, f"{notional:.2f} vs minimum {cost_min:.2f}")

    # Belt and braces: the finished figures against the caps, whatever the arithmetic above did.
    cap = min(MAX_RISK_PER_TRADE, settings.risk_per_trade) * equity
    check("risk_cap", risk_amount <= cap * (1 + TOLERANCE), f"{risk_amount:.2f} at risk vs cap {cap:.2f}")
    heat_limit = settings.max_portfolio_heat * equity
    check("heat_cap", heat + risk_amount <= heat_limit * (1 + TOLERANCE), f"heat after {heat + risk_amount:.2f} vs {heat_limit:.2f}")
    over = [name for name, (limit, used, per_unit) in rooms.items() if used + quantity * per_unit > limit * (1 + TOLERANCE)]
    check("exposure_caps", not over, f"over: {', '.join(over)}" if over else "every limit holds")

    book = portfolio.open
    exposure = {f"symbol:{proposal.symbol}": _used(book, lambda p: p.symbol == proposal.symbol) + notional}
    exposure |= {f"tag:{tag}": _used(book, lambda p, t=tag: t in p.tags) + notional for tag in proposal.tags}
    exposure |= {f"direction:{side}": _used(book, lambda p, s=side: p.side == s) + (notional if side == proposal.side else 0.0)
                 for side in ("buy", "sell")}
    figures |= {"quantity": quantity, "notional": notional, "risk_amount": risk_amount, "risk_fraction": risk_amount / equity,
                "heat_after": (heat + risk_amount) / equity, "exposure_after": exposure}
    return verdict()
