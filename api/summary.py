"""Human-readable renderings of a run for the terminal."""

from __future__ import annotations

from api.runs import CheckpointInfo, RunOutcome
from state.sections import Check


def _checks(checks: list[Check]) -> str:
    failed = [c for c in checks if c.passed is False]
    skipped = sum(1 for c in checks if c.passed is None)
    text = f"{len(checks) - len(failed) - skipped} passed"
    if skipped:
        text += f", {skipped} not applicable"
    if failed:
        text += ", FAILED: " + "; ".join(f"{c.name} ({c.detail})" for c in failed)
    return text


def render_outcome(outcome: RunOutcome) -> str:
    v = outcome.values
    request = v.get("request")
    lines = [f"aitrader run {request.symbol if request else '?'}  thread {outcome.thread_id}"]
    if request:
        lines.append(f"  clock {request.as_of}  scenario {request.scenario or 'symbol default'}  approval {request.approval_mode}")
    if "sanity" in v:
        lines.append(f"  sanity        {_checks(v['sanity'].checks)}")
    if "market" in v:
        m = v["market"]
        counts = ", ".join(f"{tf}:{s.count}" for tf, s in m.timeframes.items())
        lines.append(f"  market data   {m.source} last {m.last_price:.8g}  candles {counts}")
    if "quality" in v:
        lines.append(f"  data quality  {_checks(v['quality'].checks)}")
    features = v.get("features")
    if features and features.regime:
        regimes = ", ".join(f"{tf}:{r.regime}" for tf, r in features.regime.by_timeframe.items())
        lines.append(f"  regime        {features.regime.primary}  ({regimes})")
    if features and features.structure:
        biases = ", ".join(f"{tf}:{s.bias}" for tf, s in features.structure.by_timeframe.items())
        lines.append(f"  structure     {biases}")
    levels = v.get("levels")
    if levels and levels.confluence and levels.confluence.zones:
        top = levels.confluence.zones[0]
        lines.append(f"  confluence    {len(levels.confluence.zones)} zones, strongest {top.low:.8g}–{top.high:.8g} (score {top.score})")
    for name, signal in (v.get("signals") or {}).items():
        error = f"  ERROR {signal.error}" if signal.error else ""
        lines.append(f"  signal        {name:<16} {signal.direction:<5} {signal.confidence:.2f}  {signal.rationale}{error}")
    if "consensus" in v:
        c = v["consensus"]
        lines.append(f"  consensus     {c.direction} net {c.net_score:+.2f}  {c.reason}")
    if "verification" in v:
        lines.append(f"  verification  {_checks(v['verification'].checks)}")
    if "risk" in v:
        r = v["risk"]
        if r.quantity:
            lines.append(
                f"  risk          {r.side} {r.quantity:.8g} @ {r.entry:.8g}  stop {r.stop:.8g}  target {r.target:.8g}  "
                f"notional {r.notional:.2f}  at risk {r.risk_amount:.2f} ({r.risk_fraction:.1%} of {r.equity:.0f})"
            )
        lines.append(f"  risk checks   {_checks(r.checks)}")
    if "approval" in v:
        a = v["approval"]
        lines.append(f"  approval      {a.status} by {a.by}  {a.reason}")
    if "orders" in v:
        for order in v["orders"].orders:
            price = order.fill_price if order.fill_price else order.price
            lines.append(f"  order         {order.role:<11} {order.side} {order.quantity:.8g} @ {price:.8g} {order.status}  {order.client_order_id}")
    if outcome.pending:
        p = outcome.pending.proposal
        lines.append(f"  WAITING FOR APPROVAL: {p['side']} {p['quantity']:.8g} {p['symbol']} @ {p['entry']:.8g} ({'; '.join(p['reasons'])})")
        lines.append(f"    approve: aitrader approve {outcome.thread_id}")
        lines.append(f"    reject:  aitrader reject {outcome.thread_id} --reason '...'")
    if outcome.decision:
        d = outcome.decision
        lines.append(f"  DECISION      {d.action} at {d.stage}: {d.reason}")
    return "\n".join(lines)


def render_history(thread_id: str, infos: list[CheckpointInfo]) -> str:
    lines = [f"history of {thread_id} (newest first)", f"  {'step':>4}  {'checkpoint id':<38} {'time':<33} wrote"]
    for info in infos:
        lines.append(f"  {info.step:>4}  {info.checkpoint_id:<38} {info.created_at or '':<33} {', '.join(info.nodes)}")
    return "\n".join(lines)
