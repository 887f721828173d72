"""A local stand-in for Binance's spot REST API, for tests of the ccxt market-data source.

No network reaches an exchange here, so tests point ccxt at this server instead (the
source's ``api_url``) and ccxt's own request building, error mapping and response
parsing run unchanged. Responses follow Binance's documented spot wire format
(developers.binance.com, "General endpoints" and "Market data endpoints") and the
response samples quoted in ccxt's binance sources:

- ``GET /api/v3/exchangeInfo``: the static document ``recorded/binance/exchangeInfo.json``,
  a trimmed but structurally complete copy of the real shape (five symbols, one of them
  ``BREAK``). It was written after the documentation, not captured live (nothing to
  capture from here); ``serverTime`` is replaced by the server's clock.
- ``GET /api/v3/ticker/24hr``: ``recorded/binance/ticker_24hr.json``, one object per symbol.
- ``GET /api/v3/klines``: rows generated from a deterministic price series in Binance's
  exact array format ``[openTime, "open", "high", "low", "close", "volume", closeTime,
  "quoteVolume", trades, "takerBuyBase", "takerBuyQuote", "0"]``, honouring ``symbol``,
  ``interval``, ``startTime``, ``endTime`` and ``limit`` (default 500, max 1000) as Binance
  does. Like Binance it includes the still-forming candle (partial values) but never one
  that opens after the server's clock, which a test moves with :meth:`advance`.
- ``GET /api/v3/time`` and ``/api/v3/ping``, in case ccxt asks for them.
- Anything else: Binance's HTML 404, and the request stays in the log for tests to see.

Every request is logged (path and query) in :attr:`BinanceStub.requests`. A test scripts
failures per endpoint with :meth:`BinanceStub.fail`, e.g. ``fail("klines", "429", "503")``
makes the next two klines requests answer HTTP 429 and then 503; the names are in
:data:`FAILURES`. ``"timeout"`` holds the response for ``hang_seconds`` so ccxt's own
timeout fires.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

RECORDED = Path(__file__).parent / "recorded" / "binance"
ERRORS: dict[str, dict[str, Any]] = json.loads((RECORDED / "errors.json").read_text())

_MIN = 60_000
INTERVALS: dict[str, int] = {
    "1m": _MIN, "3m": 3 * _MIN, "5m": 5 * _MIN, "15m": 15 * _MIN, "30m": 30 * _MIN,
    "1h": 60 * _MIN, "2h": 120 * _MIN, "4h": 240 * _MIN, "6h": 360 * _MIN, "8h": 480 * _MIN,
    "12h": 720 * _MIN, "1d": 1440 * _MIN, "1w": 7 * 1440 * _MIN,
}  # fmt: skip
_MONDAY = 4 * 1440 * _MIN  # 1970-01-05: Binance's weekly klines open on Mondays 00:00 UTC

# name -> (HTTP status, JSON body, or a plain-text body); "timeout" answers late instead.
FAILURES: dict[str, tuple[int, dict[str, Any] | str]] = {
    "429": (429, ERRORS["too_much_weight"]),  # weight limit hit; Binance adds Retry-After
    "418": (418, ERRORS["ip_banned"]),  # IP auto-banned after ignoring 429s
    "500": (500, ERRORS["internal_error"]),
    "502": (502, "<html><body><h1>502 Bad Gateway</h1></body></html>"),
    "503": (503, "<html><body><h1>503 Service Unavailable</h1></body></html>"),
    "504": (504, "<html><body><h1>504 Gateway Time-out</h1></body></html>"),
    "401": (401, ERRORS["invalid_api_key"]),
    "bad_symbol": (400, ERRORS["invalid_symbol"]),
}


@dataclass(frozen=True)
class Logged:
    path: str
    params: dict[str, str]


def _unit(*key: object) -> float:
    """A reproducible uniform number in [0, 1) for the given key."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _decimals(step: str) -> int:
    """Decimal places of a Binance step/tick string like "0.00100000"."""
    digits = step.rstrip("0").split(".")[1] if "." in step else ""
    return len(digits)


def _fmt(value: float, places: int) -> str:
    # Binance sends every decimal with 8 places, rounded to the market's tick or step.
    return f"{round(value, places):.8f}"


class BinanceStub:
    """The fake exchange. Use as ``async with BinanceStub(now=...) as server: server.url``."""

    def __init__(
        self,
        now: datetime,
        *,
        hang_seconds: float = 5.0,
        listed: datetime | None = None,
        halted: dict[str, datetime] | None = None,
    ) -> None:
        self.now_ms = int(now.timestamp() * 1000)
        self.hang_seconds = hang_seconds
        # every symbol's first trade; klines before it do not exist
        self.listed_ms = int((listed or datetime(2020, 1, 1, tzinfo=UTC)).timestamp() * 1000)
        # symbol -> when trading stopped (a BREAK market): no klines open at or after it
        self.halted_ms = {s: int(t.timestamp() * 1000) for s, t in (halted or {}).items()}
        self.requests: list[Logged] = []
        self.exchange_info: dict[str, Any] = json.loads((RECORDED / "exchangeInfo.json").read_text())
        self.tickers: dict[str, dict[str, Any]] = {
            t["symbol"]: t for t in json.loads((RECORDED / "ticker_24hr.json").read_text())
        }
        self.markets = {s["symbol"]: s for s in self.exchange_info["symbols"]}
        self._failures: dict[str, deque[str]] = defaultdict(deque)
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- test controls -----------------------------------------------------------
    def fail(self, endpoint: str, *failures: str) -> None:
        """Script the next responses of ``endpoint`` ("klines", "exchangeInfo", "ticker/24hr")."""
        for name in failures:
            if name != "timeout" and name not in FAILURES:
                raise ValueError(f"unknown failure {name!r}; known: timeout, {', '.join(FAILURES)}")
            self._failures[self._path(endpoint)].append(name)

    def advance(self, delta: timedelta) -> None:
        self.now_ms += int(delta.total_seconds() * 1000)

    def requests_to(self, endpoint: str) -> list[dict[str, str]]:
        path = self._path(endpoint)
        return [r.params for r in self.requests if r.path == path]

    def closed_candles(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[list[Any]]:
        """Every closed kline row with ``start_ms <= openTime <= end_ms``, as the wire sends it."""
        step = INTERVALS[interval]
        first = max(self._ceil(start_ms, interval), self._ceil(self.listed_ms, interval))
        last = min(end_ms, self.halted_ms.get(symbol, end_ms + 1) - 1)
        rows = [self._kline(symbol, interval, t) for t in range(first, last + 1, step)]
        return [r for r in rows if r[0] + step <= self.now_ms]

    # --- the price series --------------------------------------------------------
    def _price(self, symbol: str, t: int) -> float:
        # smooth waves around the ticker's last price: continuous, so open == previous close
        level = float(self.tickers[symbol]["lastPrice"])
        days = t / 86_400_000
        wave = 0.06 * math.sin(days / 9.0) + 0.015 * math.sin(days * 5.3) + 0.004 * math.sin(days * 61.0)
        return level * math.exp(wave)

    def _kline(self, symbol: str, interval: str, t: int) -> list[Any]:
        step = INTERVALS[interval]
        market = self.markets[symbol]
        filters = {f["filterType"]: f for f in market["filters"]}
        tick, lot = _decimals(filters["PRICE_FILTER"]["tickSize"]), _decimals(filters["LOT_SIZE"]["stepSize"])
        end = min(t + step, self.now_ms)  # a forming candle stops at the clock
        fraction = (end - t) / step
        o, c = self._price(symbol, t), self._price(symbol, end)
        u = [_unit(symbol, interval, t, k) for k in range(5)]
        h = max(o, c) * (1 + 0.004 * u[0] * fraction)
        low = min(o, c) * (1 - 0.004 * u[1] * fraction)
        volume = (0.5 + u[2]) * 2e5 / o * (step / 3_600_000) * fraction
        quote = volume * (o + c) / 2
        return [
            t, _fmt(o, tick), _fmt(h, tick), _fmt(low, tick), _fmt(c, tick), _fmt(volume, lot),
            t + step - 1, _fmt(quote, 8), int(50 + 5000 * u[3] * fraction),
            _fmt(volume * u[4], lot), _fmt(quote * u[4], 8), "0",
        ]  # fmt: skip

    def _floor(self, t: int, interval: str) -> int:
        origin = _MONDAY if interval == "1w" else 0
        return origin + (t - origin) // INTERVALS[interval] * INTERVALS[interval]

    def _ceil(self, t: int, interval: str) -> int:
        down = self._floor(t, interval)
        return down if down == t else down + INTERVALS[interval]

    # --- endpoints ---------------------------------------------------------------
    def _klines(self, q: dict[str, str]) -> web.Response:
        symbol, interval = q.get("symbol"), q.get("interval")
        if not symbol or not interval:
            missing = "symbol" if not symbol else "interval"
            msg = f"Mandatory parameter '{missing}' was not sent, was empty/null, or malformed."
            return _json({"code": -1102, "msg": msg}, 400)
        if symbol not in self.markets:
            return _json(ERRORS["invalid_symbol"], 400)
        if interval not in INTERVALS:
            return _json(ERRORS["invalid_interval"], 400)
        limit = min(int(q.get("limit", 500)), 1000)
        step = INTERVALS[interval]
        newest = self._floor(self.now_ms, interval)  # the forming candle, which Binance includes
        if symbol in self.halted_ms:
            newest = min(newest, self._ceil(self.halted_ms[symbol], interval) - step)
        end = min(self._floor(int(q["endTime"]), interval), newest) if "endTime" in q else newest
        first_listed = self._ceil(self.listed_ms, interval)
        if "startTime" in q:  # the first `limit` klines opening at or after startTime
            start = max(self._ceil(int(q["startTime"]), interval), first_listed)
            opens = range(start, end + 1, step)[:limit]
        else:  # the newest `limit` klines up to endTime (or now)
            opens = range(max(end - (limit - 1) * step, first_listed), end + 1, step)
        return _json([self._kline(symbol, interval, t) for t in opens])

    def _ticker(self, q: dict[str, str]) -> web.Response:
        if "symbol" in q:
            ticker = self.tickers.get(q["symbol"])
            return _json(ticker) if ticker else _json(ERRORS["invalid_symbol"], 400)
        if "symbols" in q:
            wanted = json.loads(q["symbols"])
            if any(s not in self.tickers for s in wanted):
                return _json(ERRORS["invalid_symbol"], 400)
            return _json([self.tickers[s] for s in wanted])
        return _json(list(self.tickers.values()))

    def _exchange_info(self, q: dict[str, str]) -> web.Response:
        doc = dict(self.exchange_info, serverTime=self.now_ms)
        if "symbol" in q:
            if q["symbol"] not in self.markets:
                return _json(ERRORS["invalid_symbol"], 400)
            doc["symbols"] = [self.markets[q["symbol"]]]
        return _json(doc)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        params = dict(request.query)
        self.requests.append(Logged(request.path, params))
        scripted = self._failures[request.path]
        if scripted:
            name = scripted.popleft()
            if name == "timeout":
                await asyncio.sleep(self.hang_seconds)  # ccxt gives up first; the handler is cancelled
            else:
                status, body = FAILURES[name]
                headers = {"Retry-After": "1"} if status in (418, 429) else {}
                if isinstance(body, dict):
                    return _json(body, status, headers)
                return web.Response(status=status, text=body, content_type="text/html", headers=headers)
        routes = {
            "/api/v3/exchangeInfo": self._exchange_info,
            "/api/v3/klines": self._klines,
            "/api/v3/ticker/24hr": self._ticker,
            "/api/v3/time": lambda q: _json({"serverTime": self.now_ms}),
            "/api/v3/ping": lambda q: _json({}),
        }
        route = routes.get(request.path)
        if route is None or request.method != "GET":
            page = "<html><body><h1>404 Not Found</h1></body></html>"
            return web.Response(status=404, text=page, content_type="text/html")
        return route(params)

    @staticmethod
    def _path(endpoint: str) -> str:
        return endpoint if endpoint.startswith("/") else f"/api/v3/{endpoint}"

    # --- lifecycle ---------------------------------------------------------------
    async def __aenter__(self) -> BinanceStub:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a client that timed out must not keep a sleeping handler alive
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    body = json.dumps(data, separators=(",", ":"))
    return web.Response(
        status=status,
        body=body.encode(),
        content_type="application/json",
        charset="UTF-8",
        headers={"x-mbx-used-weight": "2", "x-mbx-used-weight-1m": "2", **(headers or {})},
    )
