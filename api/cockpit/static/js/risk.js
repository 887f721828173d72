// The risk dashboard: equity, drawdowns against the breakers, heat against its cap, exposure, the kill switch.
import { $, el, fmt, get, notify, pct, post } from "./api.js";
import { drawLine } from "./chart.js";

function bar(label, value, cap) {
  const share = cap > 0 ? Math.min(value / cap, 1) : 0;
  return el("div", { "data-testid": `limit-${label}` },
    el("div", {}, `${label}: ${pct(value)} of ${pct(cap)}`),
    el("div", { class: `bar ${value > cap ? "over" : ""}` }, el("div", { style: `width:${(share * 100).toFixed(1)}%` })));
}

export function showGovernor(governor) {
  const badge = $("governor-badge");
  badge.textContent = governor.halted ? `HALTED: ${governor.reason}` : "trading";
  badge.classList.toggle("halted", governor.halted);
  const reason = el("input", { placeholder: "why halt?", "aria-label": "halt reason" });
  $("governor-panel").replaceChildren(
    el("p", { "data-testid": "governor-state" }, governor.halted ? `Halted by ${governor.changed_by || "?"}: ${governor.reason}` : "Trading: new orders allowed."),
    governor.disabled_strategies && governor.disabled_strategies.length ? el("p", {}, `disabled: ${governor.disabled_strategies.join(", ")}`) : "",
    governor.halted
      ? el("button", { "data-testid": "resume-button", onclick: async () => {
          try { showGovernor(await post("/governor/resume", { reason: "resumed from the cockpit" })); notify("trading resumed"); } catch (error) { notify(error.message, true); }
        } }, "Resume trading")
      : el("div", { class: "actions" }, reason, el("button", { class: "halt", "data-testid": "halt-button", onclick: async () => {
          const why = reason.value.trim() || "kill switch in the cockpit";
          if (!window.confirm(`Halt all new orders and cancel resting entries? (${why})`)) return;
          try { const outcome = await post("/governor/halt", { reason: why }); showGovernor(outcome.state); notify(`halted; ${outcome.cancelled.length} resting entries cancelled`); } catch (error) { notify(error.message, true); }
        } }, "KILL SWITCH")),
  );
}

export async function refreshRisk() {
  const report = await get("/portfolio");
  showGovernor(report.governor);
  $("equity-figures").replaceChildren(el("dl", { class: "figures" },
    el("dt", {}, "equity"), el("dd", { "data-testid": "equity" }, fmt(report.equity, 8)),
    el("dt", {}, "realized"), el("dd", {}, fmt(report.realized, 6)),
    el("dt", {}, "unrealized"), el("dd", {}, fmt(report.unrealized, 6))));
  drawLine($("equity-chart"), [{ at: report.equity_curve[0]?.at ?? new Date().toISOString(), equity: report.start_equity }, ...report.equity_curve]);
  $("limits").replaceChildren(
    ...Object.entries(report.drawdown_limits).map(([period, limit]) => bar(`${period} drawdown`, report.drawdowns[period] || 0, limit)),
    bar("heat", report.heat, report.heat_cap));
  $("exposure").replaceChildren(...Object.entries(report.exposure).map(([kind, shares]) =>
    el("div", {}, el("strong", {}, `by ${kind}`), Object.keys(shares).length
      ? Object.entries(shares).map(([name, share]) => bar(name, share, report.exposure_caps[kind]))
      : el("p", { class: "muted" }, "nothing open"))));
  const table = $("positions-table");
  table.replaceChildren(el("tr", {}, ["symbol", "side", "quantity", "entry", "stop", "target", "mark / exit", "P&L", "status"].map((h) => el("th", {}, h))));
  for (const p of [...report.open, ...report.closed]) {
    const closed = p.status === "closed";
    table.append(el("tr", {}, el("td", {}, p.symbol), el("td", {}, p.side), el("td", {}, fmt(p.quantity)), el("td", {}, fmt(p.entry_price ?? p.limit_price)),
      el("td", {}, fmt(p.stop)), el("td", {}, fmt(p.target)), el("td", {}, fmt(closed ? p.exit_price : p.mark_price)),
      el("td", {}, fmt(closed ? p.realized_pnl : p.unrealized_pnl, 5)), el("td", {}, p.status + (p.exit_reason ? ` (${p.exit_reason})` : ""))));
  }
}
