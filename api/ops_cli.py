"""Operator commands: the governor, the audit trail, positions and pending approvals."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from api.runs import Lifecycles
from state.portfolio import Position
from tools.governor import Governor
from tools.portfolio import monitor

EXIT_OK, EXIT_BROKEN = 0, 1


def add_parsers(sub: Any) -> None:
    governor = sub.add_parser("governor", help="the kill switch, strategy disables and capital budget")
    gsub = governor.add_subparsers(dest="governor_command", required=True)
    gsub.add_parser("status", help="show the governor's state").add_argument("--json", action="store_true")
    halt = gsub.add_parser("halt", help="stop new orders in every run and cancel resting entries")
    halt.add_argument("--reason", required=True)
    halt.add_argument("--by", default="cli")
    resume = gsub.add_parser("resume", help="allow new orders again")
    resume.add_argument("--reason", default="")
    resume.add_argument("--by", default="cli")
    for name in ("disable", "enable"):
        toggle = gsub.add_parser(name, help=f"{name} one strategy in every run")
        toggle.add_argument("strategy")
        toggle.add_argument("--reason", default="")
        toggle.add_argument("--by", default="cli")
    budget = gsub.add_parser("budget", help="most notional the open book may hold ('none' lifts it)")
    budget.add_argument("amount")
    budget.add_argument("--by", default="cli")

    audit = sub.add_parser("audit", help="the append-only, hash-chained audit trail")
    asub = audit.add_subparsers(dest="audit_command", required=True)
    asub.add_parser("verify", help="walk the hash chain and report the first broken link").add_argument("--json", action="store_true")
    show = asub.add_parser("show", help="print a run's trail")
    show.add_argument("thread_id")
    show.add_argument("--json", action="store_true")

    positions = sub.add_parser("positions", help="open positions marked to the latest candle, and closed trades")
    positions.add_argument("--json", action="store_true")

    approvals = sub.add_parser("approvals", help="runs waiting for approval")
    approvals.add_argument("--expire", action="store_true", help="expire those past their deadline (recorded as expired)")
    approvals.add_argument("--json", action="store_true")

    listing = sub.add_parser("runs", help="runs started from any surface, newest first")
    listing.add_argument("--status", choices=["queued", "running", "paused", "done", "failed", "skipped"])
    listing.add_argument("--symbol")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")

    cont = sub.add_parser("resume", help="carry on a run that stopped without finishing (e.g. a crashed process)")
    cont.add_argument("thread_id")
    cont.add_argument("--json", action="store_true")


def _print(args: argparse.Namespace, document: Any, text: str) -> None:
    print(json.dumps(document, indent=2, default=str) if getattr(args, "json", False) else text)


async def governor_command(args: argparse.Namespace, runs: Lifecycles) -> int:
    governor = Governor(runs.storage.ledger, runs.storage.audit)
    command = args.governor_command
    if command == "halt":
        outcome = await governor.halt(args.reason, args.by, runs.hub.brokers())
        print(f"halted: {args.reason} (cancelled {len(outcome.cancelled)} resting entries)")
        for problem in outcome.left:
            print(f"  not cancelled: {problem}")
        return EXIT_OK
    if command == "resume":
        await governor.resume(args.by, args.reason)
    elif command in ("disable", "enable"):
        await governor.set_strategy(args.strategy, enabled=command == "enable", by=args.by, reason=args.reason)
    elif command == "budget":
        await governor.set_budget(None if args.amount.lower() == "none" else float(args.amount), by=args.by)
    state = await governor.state()
    lines = [
        f"governor: {'HALTED' if state.halted else 'running'}" + (f" — {state.reason}" if state.reason else ""),
        f"  changed by {state.changed_by} at {state.changed_at or '-'}",
        f"  capital budget: {state.capital_budget if state.capital_budget is not None else 'none'}",
        "  disabled strategies: " + (", ".join(f"{k} ({v})" for k, v in state.disabled_strategies.items()) or "none"),
    ]
    _print(args, state.model_dump(mode="json"), "\n".join(lines))
    return EXIT_OK


async def audit_command(args: argparse.Namespace, runs: Lifecycles) -> int:
    if args.audit_command == "verify":
        report = await runs.storage.audit.verify()
        text = (
            f"audit chain intact: {report.rows} rows"
            if report.intact
            else f"audit chain BROKEN at row {report.broken_at}: {report.problem} ({report.rows} rows read)"
        )
        _print(args, report.model_dump(), text)
        return EXIT_OK if report.intact else EXIT_BROKEN
    rows = await runs.storage.audit.trail(args.thread_id)
    if not rows:
        raise LookupError(f"no audit rows for thread {args.thread_id!r}")
    text = "\n".join(
        f"{r.seq:>6}  {r.recorded_at[:23]}  {r.node:<18} {r.event:<14} {r.verdict[:40]:<40} ckpt {str(r.checkpoint_id)[-12:]}" for r in rows
    )
    _print(args, [r.model_dump() for r in rows], text)
    return EXIT_OK


def _position_line(p: Position) -> str:
    pnl = p.realized_pnl if p.status == "closed" else p.unrealized_pnl
    price = p.exit_price if p.status == "closed" else p.mark_price
    return (
        f"{p.symbol:<12} {p.side:<4} {p.quantity:>12.6g} entry {p.entry_price or p.limit_price or 0:>12.6g} "
        f"{'exit' if p.status == 'closed' else 'mark'} {price or 0:>12.6g} P&L {pnl or 0:>+10.2f} {p.status}"
        + (f" ({p.exit_reason})" if p.exit_reason else "")
    )


async def positions_command(args: argparse.Namespace, runs: Lifecycles) -> int:
    # Monitoring: fill and mark every open bracket on the market it was opened on, up to now.
    timeframe = runs.settings.timeframes[0]
    book = await monitor(runs.storage.ledger, runs.hub.brokers(), runs.hub.position_source, timeframe, datetime.now(UTC), runs.settings)
    live, problems = book.live, book.problems
    closed = await runs.storage.ledger.positions(statuses=("closed",))
    realized = sum(p.realized_pnl or 0.0 for p in closed)
    unrealized = sum(p.unrealized_pnl or 0.0 for p in live if p.is_live)
    lines = ["open:"] + [f"  {_position_line(p)}" for p in live if p.is_live] + ["closed:"] + [f"  {_position_line(p)}" for p in closed]
    lines.append(f"realized {realized:+.2f}, unrealized {unrealized:+.2f}, equity {book.equity:.2f}")
    lines.append("drawdown " + ", ".join(f"{k} {v:.2%}" for k, v in book.drawdowns.items()))
    if book.tripped:
        lines.append(f"GOVERNOR HALTED: {book.tripped}")
    lines += [f"  not synced: {problem}" for problem in problems]
    document = {
        "open": [p.model_dump(mode="json") for p in live],
        "closed": [p.model_dump(mode="json") for p in closed],
        "equity": book.equity,
        "drawdowns": book.drawdowns,
        "tripped": book.tripped,
        "problems": problems,
    }
    _print(args, document, "\n".join(lines))
    return EXIT_OK


async def approvals_command(args: argparse.Namespace, runs: Lifecycles) -> int:
    if args.expire:
        expired = await runs.expire_stale()
        print(f"expired {len(expired)} approvals" + "".join(f"\n  {o.thread_id}: {o.decision.reason if o.decision else ''}" for o in expired))
    pending = await runs.pending_approvals()
    text = "\n".join(
        f"{row['thread_id']}  {row['symbol']}  {row['proposal'].get('side')} {row['proposal'].get('quantity'):.6g}  expires {row['expires_at']}"
        for row in pending
    ) or "no runs waiting for approval"
    _print(args, pending, text)
    return EXIT_OK


async def runs_command(args: argparse.Namespace, runs: Lifecycles) -> int:
    rows = await runs.storage.ledger.runs(status=args.status, symbol=args.symbol.upper() if args.symbol else None, limit=args.limit)
    text = "\n".join(
        f"{row['started_at'][:19]}  {row['thread_id']:<32} {row['symbol']:<12} {row['status']:<8} {row['action'] or '-':<7} {(row['reason'] or '')[:60]}"
        for row in rows
    ) or "no runs"
    _print(args, rows, text)
    return EXIT_OK
