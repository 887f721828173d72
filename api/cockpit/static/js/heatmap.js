// Watchlist x strategies: the signed confidence of each symbol's latest signals, and the consensus.
import { $, el, get } from "./api.js";

function colour(value) {
  if (value === null || value === undefined) return "transparent";
  const strength = Math.min(Math.abs(value), 1);
  return value >= 0 ? `rgba(38, 162, 105, ${0.15 + 0.85 * strength})` : `rgba(224, 27, 36, ${0.15 + 0.85 * strength})`;
}

function cell(value, testid) {
  const text = value === null || value === undefined ? "–" : value.toFixed(2);
  return el("td", { class: "cell", style: `background:${colour(value)}`, "data-value": value ?? "", "data-testid": testid }, text);
}

export async function refreshHeatmap() {
  const { strategies, rows } = await get("/heatmap");
  const table = $("heatmap-table");
  table.innerHTML = "";
  table.append(el("tr", {}, el("th", {}, "symbol"), strategies.map((name) => el("th", {}, name)), el("th", {}, "consensus"), el("th", {}, "decision")));
  for (const row of rows) {
    table.append(el("tr", { "data-symbol": row.symbol },
      el("td", {}, row.symbol),
      strategies.map((name) => cell(row.signals[name], `heat-${row.symbol}-${name}`)),
      cell(row.consensus, `heat-${row.symbol}-consensus`),
      el("td", {}, row.action || "–"),
    ));
  }
  if (!rows.length) table.append(el("tr", {}, el("td", {}, "no finished runs yet: scan a watchlist with the Run form")));
}
