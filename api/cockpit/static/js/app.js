// The cockpit: tabs, the start form, and refreshes driven by the live trail.
import { $, get, notify, post } from "./api.js";
import { refreshApprovals } from "./approvals.js";
import { drawRunChart } from "./chart.js";
import { refreshHeatmap } from "./heatmap.js";
import { refreshRisk, showGovernor } from "./risk.js";
import { refreshRunPicker, startReplay } from "./replay.js";
import { onTrailEvent, startTrail } from "./trail.js";

const refreshers = {
  approvals: refreshApprovals,
  heatmap: refreshHeatmap,
  risk: refreshRisk,
  symbol: () => refreshRunPicker($("symbol-run"), showSymbol),
  replay: () => refreshRunPicker($("replay-run"), loadReplay),
};
let active = "trail";
const loadReplay = startReplay();

async function showSymbol(threadId) {
  const [chart, run] = await Promise.all([get(`/runs/${threadId}/chart`), get(`/runs/${threadId}`)]);
  drawRunChart($("symbol-chart"), $("symbol-legend"), chart);
  const decision = run.decision ? `${run.decision.action}: ${run.decision.reason}` : run.pending_interrupt ? "waiting for approval" : run.run.status;
  $("symbol-decision").textContent = `${chart.symbol} ${chart.timeframe} at ${chart.as_of} — ${decision}`;
}

function refresh(tab) {
  const action = refreshers[tab];
  if (action) action().catch((error) => notify(error.message, true));
}

function selectTab(tab) {
  active = tab;
  for (const button of document.querySelectorAll("#tabs button")) button.classList.toggle("active", button.dataset.tab === tab);
  for (const section of document.querySelectorAll(".tab")) section.classList.toggle("active", section.id === tab);
  refresh(tab);
}

function wireIdentity() {
  for (const [id, key] of [["operator", "aitrader.operator"], ["token", "aitrader.token"]]) {
    $(id).value = localStorage.getItem(key) || "";
    $(id).addEventListener("change", () => localStorage.setItem(key, $(id).value.trim()));
  }
}

function wireStartForm() {
  $("start-form").addEventListener("submit", async (submit) => {
    submit.preventDefault();
    const form = new FormData(submit.target);
    const symbols = String(form.get("symbols")).split(/[\s,]+/).filter(Boolean);
    // One symbol is a run; several are a scan (bounded, ranked, and skipped while trading is halted).
    const body = { ...(symbols.length === 1 ? { symbol: symbols[0] } : { symbols }), approval_mode: form.get("approval_mode") };
    if (form.get("scenario")) body.scenario = form.get("scenario");
    try {
      const { runs } = await post("/runs", body);
      notify(`started ${runs.map((run) => run.symbol).join(", ")}`);
    } catch (error) {
      notify(error.message, true);
    }
  });
}

let pendingRefresh = null;
onTrailEvent((name, event) => {
  if (name === "interrupt" || name === "decision" || name === "APPROVED_ORD") refreshApprovals().catch(() => {});
  if (name === "SYS_COMMAND" && event.node === "governor") get("/governor").then(showGovernor).catch(() => {});
  if (active !== "trail" && active !== "approvals" && ["decision", "ORDER_FILLED", "SYS_COMMAND"].includes(name)) {
    clearTimeout(pendingRefresh);
    pendingRefresh = setTimeout(() => refresh(active), 500);  // a burst of events refreshes once
  }
});

for (const button of document.querySelectorAll("#tabs button")) button.addEventListener("click", () => selectTab(button.dataset.tab));
wireIdentity();
wireStartForm();
startTrail();
refreshApprovals().catch((error) => notify(error.message, true));
// The pending list also changes without an event of its own (a run clears it as it finishes, the expiry sweep).
setInterval(() => refreshApprovals().catch(() => {}), 3000);
get("/governor").then(showGovernor).catch((error) => notify(error.message, true));
