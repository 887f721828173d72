"""The browser path works offline: headless Chromium loads the vendored lightweight-charts from loopback and draws.

A plain ``http.server`` serves a small page next to the vendored script; the page draws three candles
with a price line, a line series and markers (the calls the cockpit uses), and the test checks in the
browser that ``window.LightweightCharts`` exists and the candles' colour reached a canvas.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.browser_support import new_page, screenshot

VENDOR = Path(__file__).resolve().parents[1] / "api" / "cockpit" / "static" / "vendor"

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>chart self-test</title></head>
<body style="margin:0;background:#fff">
<div id="chart" style="width:800px;height:400px"></div>
<script src="/lightweight-charts.standalone.production.js"></script>
<script>
  const LWC = window.LightweightCharts;
  const chart = LWC.createChart(document.getElementById("chart"), {
    width: 800, height: 400, layout: {background: {type: LWC.ColorType.Solid, color: "#ffffff"}},
  });
  const candles = chart.addSeries(LWC.CandlestickSeries, {upColor: "#26a69a", downColor: "#ef5350"});
  candles.setData([
    {time: 1700000000, open: 100, high: 110, low: 95, close: 108},
    {time: 1700003600, open: 108, high: 112, low: 101, close: 103},
    {time: 1700007200, open: 103, high: 115, low: 102, close: 114},
  ]);
  candles.createPriceLine({price: 105, color: "#2962ff", title: "entry", lineStyle: LWC.LineStyle.Dashed});
  const vwap = chart.addSeries(LWC.LineSeries, {color: "#ff9800", lineWidth: 2});
  vwap.setData([{time: 1700000000, value: 104}, {time: 1700003600, value: 105}, {time: 1700007200, value: 107}]);
  LWC.createSeriesMarkers(candles, [
    {time: 1700003600, position: "belowBar", color: "#2196f3", shape: "arrowUp", text: "buy"},
  ]);
  chart.timeScale().fitContent();
</script>
</body></html>
"""

# True once some canvas holds a pixel of the up candles' colour (#26a69a): the chart really drew.
DRAWN = """() => [...document.querySelectorAll("canvas")].some(canvas => {
  if (!canvas.width || !canvas.height) return false;
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 0; i < pixels.length; i += 4) {
    if (Math.abs(pixels[i] - 0x26) < 4 && Math.abs(pixels[i + 1] - 0xa6) < 4 && Math.abs(pixels[i + 2] - 0x9a) < 4
        && pixels[i + 3] > 200) return true;
  }
  return false;
})"""


class _Handler(SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/":
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(PAGE)))
            self.end_headers()
            self.wfile.write(PAGE)
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def chart_site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(VENDOR)))
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_vendored_chart_draws_in_headless_chromium(browser, chart_site: str) -> None:
    page = await new_page(browser, chart_site)
    try:
        await page.goto("/")
        assert await page.evaluate("typeof window.LightweightCharts") == "object"
        assert await page.evaluate("window.LightweightCharts.version()") == "5.2.1"
        await page.wait_for_function(DRAWN, timeout=5000)
        path = await screenshot(page, "browser-support-self-test")
        assert path.stat().st_size > 1000
        assert page.errors == []
    finally:
        await page.context.close()
