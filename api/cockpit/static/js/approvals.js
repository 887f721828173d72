// Pending approvals: the proposed order with its evidence and chart; approve, reject with a reason, or modify the size.
import { $, el, fmt, get, notify, pct, post } from "./api.js";
import { drawRunChart } from "./chart.js";

const shown = new Map();  // thread id -> interrupt id on screen, so a refresh redraws only what changed

function figures(proposal) {
  const rows = [
    ["side", proposal.side], ["quantity", fmt(proposal.quantity)], ["entry", fmt(proposal.entry)], ["stop", fmt(proposal.stop)],
    ["target", fmt(proposal.target)], ["notional", fmt(proposal.notional, 7)], ["risk", `${fmt(proposal.risk_amount, 5)} (${pct(proposal.risk_fraction)})`],
    ["heat after", pct(proposal.heat_after)], ["regime", proposal.regime], ["expires", proposal.expires_at ? new Date(proposal.expires_at).toLocaleTimeString() : "–"],
  ];
  return el("dl", { class: "figures" }, rows.map(([name, value]) => [el("dt", {}, name), el("dd", {}, value ?? "–")]));
}

async function answer(row, body, card) {
  const run = await get(`/runs/${row.thread_id}`);
  if (run.state.request && run.state.request.broker === "live" && body.action !== "reject") {
    if (!window.confirm(`LIVE TRADING: ${body.action} a real ${row.proposal.side} of ${row.proposal.quantity} ${row.symbol}?`)) return;
  }
  try {
    await post(`/runs/${row.thread_id}/resume`, { ...body, interrupt_id: row.interrupt_id });
    notify(`${body.action} sent for ${row.symbol}`);
    card.classList.add("answered");
    card.querySelectorAll("button").forEach((button) => { button.disabled = true; });
  } catch (error) {
    notify(`${row.symbol}: ${error.message}`, true);
  }
}

function card(row) {
  const proposal = row.proposal;
  const reason = el("input", { placeholder: "reason (needed to reject)", "aria-label": "reason" });
  const quantity = el("input", { type: "number", step: "any", min: "0", placeholder: "smaller size", "aria-label": "new quantity" });
  const chart = el("div", { class: "chart mini" });
  const node = el("article", { class: "card", "data-thread": row.thread_id, "data-testid": "approval-card" },
    el("div", {}, chart),
    el("div", {},
      el("h3", {}, `${proposal.side.toUpperCase()} ${row.symbol}`),
      el("p", { class: "muted" }, proposal.consensus || ""),
      figures(proposal),
      el("p", {}, el("strong", {}, "strategies agreeing: "), (proposal.strategies || []).join(", ") || "–"),
      el("p", {}, el("strong", {}, "why a human: "), (proposal.reasons || []).join("; ")),
      el("ul", { class: "checks" }, (proposal.checks || []).map((check) =>
        el("li", { class: check.passed === false ? "failed" : "" }, `${check.passed === false ? "✗" : check.passed ? "✓" : "·"} ${check.name}: ${check.detail}`))),
      el("div", { class: "actions" },
        el("button", { class: "approve", "data-action": "approve", onclick: () => answer(row, { action: "approve" }, node) }, "Approve"),
        reason,
        el("button", { class: "reject", "data-action": "reject", onclick: () => {
          if (!reason.value.trim()) { notify("a rejection needs a reason", true); reason.focus(); return; }
          answer(row, { action: "reject", reason: reason.value.trim() }, node);
        } }, "Reject"),
        quantity,
        el("button", { "data-action": "modify", onclick: () => {
          const size = Number(quantity.value);
          if (!(size > 0 && size < proposal.quantity)) { notify(`a modified size must be above 0 and below ${proposal.quantity}`, true); return; }
          answer(row, { action: "modify", quantity: size, reason: "size reduced in the cockpit" }, node);
        } }, "Modify size"),
      ),
    ),
  );
  get(`/runs/${row.thread_id}/chart`).then((data) => drawRunChart(chart, null, data)).catch((error) => { chart.textContent = error.message; });
  return node;
}

export async function refreshApprovals() {
  const { approvals } = await get("/approvals");
  $("approval-count").textContent = approvals.length;
  $("approvals-empty").hidden = approvals.length > 0;
  const container = $("approval-cards");
  const pending = new Map(approvals.map((row) => [row.thread_id, row]));
  for (const existing of [...container.children]) {
    const row = pending.get(existing.dataset.thread);
    if (!row || shown.get(existing.dataset.thread) !== row.interrupt_id) {
      existing.remove();
      shown.delete(existing.dataset.thread);
    }
  }
  for (const row of approvals) {
    if (!shown.has(row.thread_id)) {
      container.append(card(row));
      shown.set(row.thread_id, row.interrupt_id);
    }
  }
}
