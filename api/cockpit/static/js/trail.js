// The live audit trail: every run's node verdicts as they happen, filterable by symbol and layer.
import { $, el } from "./api.js";

const EVENT_NAMES = [
  "MARKET_DATA", "ANALYSIS_UPDATE", "REGIME_CHANGE", "STRATEGY_SIGNAL", "SIGNAL", "VERIFIED_SIG", "APPROVED_ORD",
  "ORDER_REQUEST", "ORDER_FILLED", "SYS_COMMAND", "node_update", "progress", "interrupt", "decision",
];
const MAX_ROWS = 1500;
const listeners = [];

export function onTrailEvent(callback) {
  listeners.push(callback);
}

function matches(item) {
  const symbol = $("trail-symbol").value.trim().toUpperCase();
  const layer = $("trail-layer").value;
  return (!symbol || (item.dataset.symbol || "").includes(symbol)) && (!layer || item.dataset.layer === layer);
}

function applyFilters() {
  for (const item of $("trail-list").children) item.hidden = !matches(item);
}

function render(name, event) {
  const time = (event.recorded_at || "").slice(11, 23);
  const row = el("div", { class: "row" },
    el("span", { class: "muted" }, time),
    el("span", {}, event.symbol || event.thread_id),
    el("span", { class: "muted" }, event.layer),
    el("span", {}, event.node),
    el("span", { class: "event" }, name),
    el("span", {}, event.verdict),
  );
  const item = el("li", { class: `ev-${name}`, "data-symbol": event.symbol || "", "data-layer": event.layer, "data-event": name, "data-seq": event.seq }, row);
  item.addEventListener("click", () => {
    const open = item.querySelector("pre");
    if (open) open.remove();
    else item.append(el("pre", {}, JSON.stringify({ thread_id: event.thread_id, checkpoint_id: event.checkpoint_id, as_of: event.as_of, payload: event.payload }, null, 2)));
  });
  item.hidden = !matches(item);
  return item;
}

export function startTrail() {
  const list = $("trail-list");
  const source = new EventSource("/events");
  source.onopen = () => { $("trail-status").textContent = "live"; };
  source.onerror = () => { $("trail-status").textContent = "reconnecting…"; };
  for (const name of EVENT_NAMES) {
    source.addEventListener(name, (message) => {
      const event = JSON.parse(message.data);
      list.prepend(render(name, event));
      while (list.children.length > MAX_ROWS) list.lastChild.remove();
      for (const callback of listeners) callback(name, event);
    });
  }
  $("trail-symbol").addEventListener("input", applyFilters);
  $("trail-layer").addEventListener("change", applyFilters);
}
