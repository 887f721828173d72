// Candle and line charts on TradingView's lightweight-charts (vendored, loaded as a global by index.html).
const LC = () => window.LightweightCharts;

const COLORS = {
  entry: "#3584e4", stop: "#e01b24", target: "#26a269", confluence: "#e5a50a", support: "#57e389",
  resistance: "#f66151", level: "#99c1f1", vwap: "#c061cb", golden_pocket: "#f5c211",
};

function makeChart(container) {
  container.innerHTML = "";
  return LC().createChart(container, {
    autoSize: true,
    layout: { background: { color: "#0b0f13" }, textColor: "#d8dee6" },
    grid: { vertLines: { color: "#1c252e" }, horzLines: { color: "#1c252e" } },
    timeScale: { timeVisible: true, secondsVisible: false },
  });
}

function addSeries(chart, kind, options) {
  const lib = LC();
  // v5 takes the series type as an argument; v4 has one method per type.
  if (lib[`${kind}Series`]) return chart.addSeries(lib[`${kind}Series`], options);
  return chart[`add${kind}Series`](options);
}

export function drawRunChart(container, legend, chart) {
  const view = makeChart(container);
  const candles = addSeries(view, "Candlestick", {
    upColor: "#26a269", downColor: "#e01b24", borderVisible: false, wickUpColor: "#26a269", wickDownColor: "#e01b24",
  });
  candles.setData(chart.candles);
  const seen = new Set();
  const first = chart.candles[0]?.time;
  const last = chart.candles[chart.candles.length - 1]?.time;
  for (const overlay of chart.overlays) {
    if (["entry", "stop", "target"].includes(overlay.kind) && first !== undefined && first !== last) {
      // An invisible series at the order's prices, so the price scale always takes the stop and target in.
      const anchor = addSeries(view, "Line", { color: "rgba(0,0,0,0)", lastValueVisible: false, priceLineVisible: false, crosshairMarkerVisible: false });
      anchor.setData([{ time: first, value: overlay.price }, { time: last, value: overlay.price }]);
    }
    const color = COLORS[overlay.kind] || "#8594a3";
    const strong = ["entry", "stop", "target"].includes(overlay.kind);
    candles.createPriceLine({ price: overlay.price, color, lineWidth: strong ? 2 : 1, lineStyle: strong ? 0 : 2, axisLabelVisible: strong, title: overlay.title });
    seen.add(overlay.kind);
  }
  if (legend) {
    legend.innerHTML = "";
    for (const kind of seen) {
      const item = document.createElement("span");
      item.style.setProperty("--c", COLORS[kind] || "#8594a3");
      item.textContent = kind.replace("_", " ");
      legend.append(item);
    }
  }
  fit(view);
  return view;
}

function fit(view) {
  view.timeScale().fitContent();
  // A chart drawn into a card that was just laid out has its width only on the next frame.
  requestAnimationFrame(() => view.timeScale().fitContent());
}

export function drawLine(container, points) {
  const view = makeChart(container);
  const line = addSeries(view, "Line", { color: "#3584e4", lineWidth: 2 });
  // One point per second at most, strictly increasing, as the library requires.
  const data = [];
  for (const point of points) {
    const time = Math.floor(new Date(point.at).getTime() / 1000);
    if (data.length && time <= data[data.length - 1].time) data[data.length - 1].value = point.equity;
    else data.push({ time, value: point.equity });
  }
  line.setData(data);
  fit(view);
  return view;
}
