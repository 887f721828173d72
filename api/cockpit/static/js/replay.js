// Forensic replay: step through a run's checkpoints with the diff each step made, and fork a what-if from any step.
import { $, el, get, notify, post } from "./api.js";

let steps = [];  // oldest first
let threadId = null;
let shown = 0;  // the latest step asked for: a slower answer for an earlier click must not overwrite it

function value(v) {
  const text = JSON.stringify(v);
  return text && text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

async function show(index) {
  if (!steps.length) return;
  const info = steps[index];
  $("replay-slider").value = index;
  $("replay-position").textContent = `step ${info.step} (${index + 1} of ${steps.length}) · ${info.nodes.join(", ")} → ${info.next.join(", ") || "end"}`;
  const asked = ++shown;
  const detail = await get(`/runs/${threadId}/checkpoints/${info.checkpoint_id}`);
  if (asked !== shown) return;
  const decision = detail.values.decision;
  $("replay-step").replaceChildren(
    el("p", {}, `checkpoint ${detail.checkpoint_id} · ${detail.created_at || ""}`),
    decision ? el("p", {}, el("strong", {}, `decision: ${decision.action}`), ` — ${decision.reason}`) : "",
    el("div", { class: "diff", "data-testid": "replay-diff" }, detail.diff.length ? detail.diff.map((change) =>
      el("div", { class: "section" }, el("strong", {}, `${change.section} ${change.change}`),
        el("ul", {}, Object.entries(change.fields).slice(0, 40).map(([field, pair]) =>
          el("li", {}, `${field}: `, el("span", { class: "before" }, value(pair.before)), " → ", el("span", { class: "after" }, value(pair.after))))))) : "no change (input)"),
  );
}

async function load(id) {
  threadId = id;
  const history = await get(`/runs/${id}/history`);
  steps = history.checkpoints.slice().reverse();
  $("replay-slider").max = Math.max(steps.length - 1, 0);
  await show(0);
}

export async function refreshRunPicker(select, onPick) {
  const { runs } = await get("/runs?limit=200");
  const current = select.value;
  select.replaceChildren(el("option", { value: "" }, "pick a run…"),
    ...runs.map((run) => el("option", { value: run.thread_id }, `${run.symbol} · ${run.status}${run.action ? " " + run.action : ""} · ${run.started_at.slice(0, 19)} · ${run.thread_id}`)));
  if (current) select.value = current;
  select.onchange = () => select.value && onPick(select.value);
}

export function startReplay() {
  $("replay-prev").onclick = () => show(Math.max(Number($("replay-slider").value) - 1, 0));
  $("replay-next").onclick = () => show(Math.min(Number($("replay-slider").value) + 1, steps.length - 1));
  $("replay-slider").oninput = () => show(Number($("replay-slider").value));
  $("fork-form").onsubmit = async (submit) => {
    submit.preventDefault();
    if (!threadId || !steps.length) return;
    const form = new FormData(submit.target);
    const body = { checkpoint_id: steps[Number($("replay-slider").value)].checkpoint_id, fork: true, request: {}, settings: {} };
    if (form.get("approval_mode")) body.request.approval_mode = form.get("approval_mode");
    if (form.get("risk_per_trade")) body.settings.risk_per_trade = Number(form.get("risk_per_trade"));
    $("fork-result").textContent = "forking…";
    try {
      const { runs } = await post(`/runs/${threadId}/replay?wait=true`, body);
      const fork = runs[0];
      const decision = fork.decision ? `${fork.decision.action}: ${fork.decision.reason}` : "waiting for approval";
      $("fork-result").replaceChildren(el("p", {}, `fork ${fork.thread_id} → ${decision}`));
    } catch (error) {
      $("fork-result").textContent = "";
      notify(error.message, true);
    }
  };
  return load;
}
