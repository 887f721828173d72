"""A local stand-in for Binance's spot REST API, for tests of the ccxt market-data source and live broker.

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

Spot trading (signed endpoints, "Trading endpoints" and "Account endpoints" of the docs),
state kept in memory per stub. ``timestamp`` and ``signature`` must be present and
``X-MBX-APIKEY`` must be sent, but the HMAC signature is NOT verified (the stub has no secret):

- ``POST /api/v3/order``: MARKET fills at once at the deterministic price at the stub's
  clock (:meth:`BinanceStub.price`); a marketable LIMIT fills the same way; other LIMIT,
  LIMIT_MAKER, STOP_LOSS(_LIMIT), TAKE_PROFIT(_LIMIT) rest as NEW. ``newClientOrderId`` is
  honoured; as on Binance it must be unique among OPEN orders only ("Orders with the same
  newClientOrderID can be accepted only when the previous one is filled"): reusing the id of
  an open order answers -2010 "Duplicate order sent.", reusing a filled one is accepted. The
  response honours ``newOrderRespType`` (ACK, RESULT, FULL with ``fills``).
- ``POST /api/v3/orderList/oco``: the above/below pair (one LIMIT_MAKER/TAKE_PROFIT*, one
  STOP_LOSS*), price relation checked against the last price as Binance does; when one leg
  fills the other becomes EXPIRED.
- ``POST /api/v3/orderList/otoco``: a LIMIT/LIMIT_MAKER working order plus an OCO pair that
  rests as PENDING_NEW until the working order is fully filled, then becomes NEW.
- ``GET /api/v3/order`` (``orderId`` or ``origClientOrderId``; the newest order with that
  client id; unknown: -2013 "Order does not exist."), ``GET /api/v3/openOrders``,
  ``GET /api/v3/allOrders``, ``GET /api/v3/myTrades`` (``orderId`` filter).
- ``DELETE /api/v3/order``: cancels an open order (and, as on Binance, its whole order
  list); anything not open answers -2011 "Unknown order sent.".
- Fills pay commission at ``commission_rate`` (0.1 %, Binance's default without BNB) in the
  asset received: base on a buy, quote on a sell. Balances are NOT modelled: the stub does not
  refuse a second sell that real Binance would reject for the locked balance.
- No ``/api/v3/account``: ccxt places, queries and cancels spot orders without it.

Test hooks: :meth:`BinanceStub.fill_order` fills a resting order (as the market would),
:meth:`BinanceStub.order` reads one back, :attr:`BinanceStub.orders` holds them all.
:meth:`BinanceStub.fail` takes ``method=`` and ``order_type=`` to aim a failure at, say, only
the POST that carries a STOP_LOSS leg; the failure ``"lost"`` executes the request and then
answers 504, like a response lost on the way back.

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
ORDER_ERRORS: dict[str, dict[str, Any]] = json.loads((RECORDED / "order_errors.json").read_text())

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
    "insufficient_balance": (400, ORDER_ERRORS["insufficient_balance"]),
    "oco_bad_prices": (400, ORDER_ERRORS["oco_bad_prices"]),
}
# Handled in the request handler rather than answered from the table above.
SPECIAL_FAILURES = ("timeout", "lost")
OPEN = ("NEW", "PARTIALLY_FILLED", "PENDING_NEW")


@dataclass(frozen=True)
class Logged:
    path: str
    params: dict[str, str]  # query and form body merged: every parameter the exchange received
    method: str = "GET"
    query: str = ""  # the raw query string and body, to check what travelled where
    body: str = ""
    headers: tuple[tuple[str, str], ...] = ()


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
        self._failures: dict[str, deque[tuple[str, str | None, str | None]]] = defaultdict(deque)
        # spot trading state
        self.orders: dict[int, dict[str, Any]] = {}  # orderId -> the order as Binance reports it
        self.lists: dict[int, dict[str, Any]] = {}  # orderListId -> list status and member ids
        self.trades: list[dict[str, Any]] = []
        self.commission_rate = 0.001
        self._ids = {"order": 10_000, "list": 500, "trade": 70_000}
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- test controls -----------------------------------------------------------
    def fail(self, endpoint: str, *failures: str, method: str | None = None, order_type: str | None = None) -> None:
        """Script the next responses of ``endpoint`` ("klines", "exchangeInfo", "order", "orderList/oco"...).

        ``method`` and ``order_type`` narrow which requests a failure hits: with
        ``order_type="STOP_LOSS"`` only a request that carries a STOP_LOSS order (``type`` or one
        of an order list's leg types) fails; the others pass through untouched.
        """
        for name in failures:
            if name not in SPECIAL_FAILURES and name not in FAILURES:
                raise ValueError(f"unknown failure {name!r}; known: {', '.join(SPECIAL_FAILURES)}, {', '.join(FAILURES)}")
            self._failures[self._path(endpoint)].append((name, method, order_type))

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

    def price(self, symbol: str) -> float:
        """The last traded price at the stub's clock, on the market's tick."""
        return round(self._price(symbol, self.now_ms), _decimals(self._filters(symbol)["PRICE_FILTER"]["tickSize"]))

    def order(self, client_order_id: str) -> dict[str, Any] | None:
        """The newest order with this client id, as ``GET /api/v3/order`` would report it."""
        found = [o for o in self.orders.values() if o["clientOrderId"] == client_order_id]
        return dict(found[-1]) if found else None

    def fill_order(self, client_order_id: str, price: float | None = None) -> dict[str, Any]:
        """Fill a resting order completely, as the market reaching it would (default: its own price)."""
        order = self._newest(client_order_id)
        if order is None or order["status"] not in ("NEW", "PARTIALLY_FILLED"):
            raise ValueError(f"no open order {client_order_id!r} to fill")
        level = float(order["price"]) or float(order["stopPrice"])
        self._execute(order, price if price is not None else level)
        return dict(order)

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

    # --- spot trading ------------------------------------------------------------
    def _filters(self, symbol: str) -> dict[str, dict[str, Any]]:
        return {f["filterType"]: f for f in self.markets[symbol]["filters"]}

    def _newest(self, client_order_id: str) -> dict[str, Any] | None:
        found = [o for o in self.orders.values() if o["clientOrderId"] == client_order_id]
        return found[-1] if found else None

    def _next(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    def _check_number(self, symbol: str, value: str | None, kind: str) -> str | None:
        """None if ``value`` fits the market's LOT_SIZE / PRICE_FILTER, else the error name."""
        key, low, name = ("LOT_SIZE", "minQty", "stepSize") if kind == "qty" else ("PRICE_FILTER", "minPrice", "tickSize")
        rule = self._filters(symbol)[key]
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return "missing"
        steps = number / float(rule[name])
        ok = number >= float(rule[low]) and abs(steps - round(steps)) < 1e-6
        return None if ok else ("lot_size" if kind == "qty" else "price_filter")

    def _new_order(self, q: dict[str, str], *, side: str, otype: str, qty: str, client_id: str | None,
                   price: str | None = None, stop: str | None = None, tif: str | None = None,
                   list_id: int = -1, status: str = "NEW") -> dict[str, Any]:
        order_id = self._next("order")
        return {
            "symbol": q["symbol"], "orderId": order_id, "orderListId": list_id,
            "clientOrderId": client_id or f"stub{order_id}", "price": _fmt(float(price or 0), 8),
            "origQty": _fmt(float(qty), 8), "executedQty": _fmt(0, 8), "cummulativeQuoteQty": _fmt(0, 8),
            "status": status, "timeInForce": tif or "GTC", "type": otype, "side": side,
            "stopPrice": _fmt(float(stop or 0), 8), "icebergQty": _fmt(0, 8), "time": self.now_ms,
            "updateTime": self.now_ms, "isWorking": otype in ("LIMIT", "LIMIT_MAKER", "MARKET"),
            "workingTime": self.now_ms, "origQuoteOrderQty": _fmt(0, 8), "selfTradePreventionMode": "EXPIRE_MAKER",
        }  # fmt: skip

    def _execute(self, order: dict[str, Any], price: float) -> list[dict[str, Any]]:
        """Fill ``order`` completely at ``price``; settle its order list. Returns Binance's ``fills``."""
        symbol = order["symbol"]
        market = self.markets[symbol]
        qty = float(order["origQty"])
        quote = qty * price
        buy = order["side"] == "BUY"
        # commission in the asset received: base on a buy, quote on a sell
        commission = (qty if buy else quote) * self.commission_rate
        asset = market["baseAsset"] if buy else market["quoteAsset"]
        trade_id = self._next("trade")
        order.update(executedQty=_fmt(qty, 8), cummulativeQuoteQty=_fmt(quote, 8), status="FILLED",
                     updateTime=self.now_ms, isWorking=True)  # fmt: skip
        self.trades.append({
            "symbol": symbol, "id": trade_id, "orderId": order["orderId"], "orderListId": order["orderListId"],
            "price": _fmt(price, 8), "qty": _fmt(qty, 8), "quoteQty": _fmt(quote, 8),
            "commission": _fmt(commission, 8), "commissionAsset": asset, "time": self.now_ms,
            "isBuyer": buy, "isMaker": order["type"] in ("LIMIT", "LIMIT_MAKER"), "isBestMatch": True,
        })  # fmt: skip
        olist = self.lists.get(order["orderListId"])
        if olist is not None:
            pair = olist["pair"]
            for other in (self.orders[i] for i in pair if i != order["orderId"]):
                if order["orderId"] in pair and other["status"] in OPEN:
                    other.update(status="EXPIRED", updateTime=self.now_ms)  # one cancels the other
                elif other["status"] == "PENDING_NEW":
                    other.update(status="NEW", updateTime=self.now_ms)  # the working order filled: arm the pair
            if all(self.orders[i]["status"] not in OPEN for i in olist["orderIds"]):
                olist.update(listStatusType="ALL_DONE", listOrderStatus="ALL_DONE")
        return [{"price": _fmt(price, 8), "qty": _fmt(qty, 8), "commission": _fmt(commission, 8),
                 "commissionAsset": asset, "tradeId": trade_id}]  # fmt: skip

    def _order_response(self, order: dict[str, Any], resp_type: str, fills: list[dict[str, Any]]) -> dict[str, Any]:
        ack = {k: order[k] for k in ("symbol", "orderId", "orderListId", "clientOrderId")} | {"transactTime": self.now_ms}
        if resp_type == "ACK":
            return ack
        result = ack | {k: v for k, v in order.items() if k not in ("time", "updateTime", "isWorking", "icebergQty")}
        if float(order["stopPrice"]) == 0:
            result.pop("stopPrice")  # a conditional field: only orders with a stop price carry it
        return result | {"fills": fills} if resp_type == "FULL" else result

    def _reject(self, name: str, missing: str | None = None) -> web.Response:
        if name == "missing":
            msg = f"Mandatory parameter '{missing}' was not sent, was empty/null, or malformed."
            return _json({"code": -1102, "msg": msg}, 400)
        return _json(ORDER_ERRORS[name], 400)

    def _duplicate(self, *client_ids: str | None) -> bool:
        open_ids = {o["clientOrderId"] for o in self.orders.values() if o["status"] in OPEN}
        open_ids |= {lst["listClientOrderId"] for lst in self.lists.values() if lst["listOrderStatus"] == "EXECUTING"}
        return any(c is not None and c in open_ids for c in client_ids)

    def _post_order(self, q: dict[str, str]) -> web.Response:
        for name in ("symbol", "side", "type"):
            if not q.get(name):
                return self._reject("missing", name)
        symbol, side, otype = q["symbol"], q["side"], q["type"]
        if symbol not in self.markets:
            return _json(ERRORS["invalid_symbol"], 400)
        if side not in ("BUY", "SELL"):
            return self._reject("invalid_side")
        if otype not in self.markets[symbol]["orderTypes"]:
            return self._reject("invalid_order_type")
        needs_price = otype in ("LIMIT", "LIMIT_MAKER", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")
        needs_stop = otype in ("STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")
        checks = [("quantity", q.get("quantity"), "qty")]
        checks += [("price", q.get("price"), "price")] if needs_price else []
        checks += [("stopPrice", q.get("stopPrice"), "price")] if needs_stop else []
        for name, value, kind in checks:
            if (problem := self._check_number(symbol, value, kind)) is not None:
                return self._reject(problem, name)
        if self._duplicate(q.get("newClientOrderId")):
            return self._reject("duplicate_order")
        last = self.price(symbol)
        limit = float(q.get("price") or 0)
        crosses = limit >= last if side == "BUY" else limit <= last
        if otype == "LIMIT_MAKER" and crosses:
            return self._reject("would_match")
        order = self._new_order(q, side=side, otype=otype, qty=q["quantity"], client_id=q.get("newClientOrderId"),
                                price=q.get("price"), stop=q.get("stopPrice"), tif=q.get("timeInForce"))  # fmt: skip
        self.orders[order["orderId"]] = order
        fills: list[dict[str, Any]] = []
        if otype == "MARKET" or otype == "LIMIT" and crosses:
            fills = self._execute(order, last)  # takes the book at the last price
        default = "FULL" if otype in ("MARKET", "LIMIT") else "ACK"
        return _json(self._order_response(order, q.get("newOrderRespType", default), fills))

    def _oco_legs(self, q: dict[str, str], prefix: str, side: str) -> dict[str, dict[str, Any]] | web.Response:
        """Validate the above/below pair of an OCO (``prefix`` "" or "pending"); the legs' params by position."""
        key = (lambda s: prefix + s[0].upper() + s[1:]) if prefix else (lambda s: s)
        symbol = q["symbol"]
        legs: dict[str, dict[str, Any]] = {}
        for where in ("above", "below"):
            otype = q.get(key(f"{where}Type"))
            if otype is None:
                return self._reject("missing", key(f"{where}Type"))
            leg = {"type": otype, "price": q.get(key(f"{where}Price")), "stop": q.get(key(f"{where}StopPrice")),
                   "client_id": q.get(key(f"{where}ClientOrderId")), "tif": q.get(key(f"{where}TimeInForce"))}  # fmt: skip
            needed = [("Price", leg["price"])] if otype in ("LIMIT_MAKER", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT") else []
            needed += [("StopPrice", leg["stop"])] if otype.startswith(("STOP_LOSS", "TAKE_PROFIT")) else []
            for name, value in needed:
                if (problem := self._check_number(symbol, value, "price")) is not None:
                    return self._reject(problem, key(f"{where}{name}"))
            legs[where] = leg
        stop_leg, limit_leg = ("above", "below") if side == "BUY" else ("below", "above")
        if not legs[stop_leg]["type"].startswith("STOP_LOSS") or legs[limit_leg]["type"] not in (
            "LIMIT_MAKER", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"
        ):
            return self._reject("oco_bad_prices")
        return legs

    def _place_list(self, q: dict[str, str], contingency: str, members: list[dict[str, Any]], pair: tuple[int, int]) -> web.Response:
        list_id = self._ids["list"]
        for order in members:
            self.orders[order["orderId"]] = order
        self.lists[list_id] = {
            "orderListId": list_id, "contingencyType": contingency, "listStatusType": "EXEC_STARTED",
            "listOrderStatus": "EXECUTING", "listClientOrderId": q.get("listClientOrderId") or f"stublist{list_id}",
            "transactionTime": self.now_ms, "symbol": q["symbol"], "orderIds": [o["orderId"] for o in members],
            "pair": pair,
        }  # fmt: skip
        return _json(self._list_response(list_id, q.get("newOrderRespType", "ACK")))

    def _list_response(self, list_id: int, resp_type: str) -> dict[str, Any]:
        olist = self.lists[list_id]
        members = [self.orders[i] for i in olist["orderIds"]]
        doc = {k: v for k, v in olist.items() if k not in ("orderIds", "pair")}
        doc["orders"] = [{k: o[k] for k in ("symbol", "orderId", "clientOrderId")} for o in members]
        doc["orderReports"] = [self._order_response(o, "RESULT" if resp_type == "ACK" else resp_type, []) for o in members]
        for report in doc["orderReports"]:
            report.pop("fills", None)
        return doc

    def _post_oco(self, q: dict[str, str]) -> web.Response:
        for name in ("symbol", "side", "quantity"):
            if not q.get(name):
                return self._reject("missing", name)
        symbol, side = q["symbol"], q["side"]
        if symbol not in self.markets:
            return _json(ERRORS["invalid_symbol"], 400)
        if (problem := self._check_number(symbol, q["quantity"], "qty")) is not None:
            return self._reject(problem, "quantity")
        legs = self._oco_legs(q, "", side)
        if isinstance(legs, web.Response):
            return legs
        if self._duplicate(q.get("listClientOrderId"), legs["above"]["client_id"], legs["below"]["client_id"]):
            return self._reject("duplicate_order")
        last = self.price(symbol)
        above, below = legs["above"], legs["below"]
        above_ref = float(above["price"] if above["type"] == "LIMIT_MAKER" else above["stop"])
        below_ref = float(below["price"] if below["type"] == "LIMIT_MAKER" else below["stop"])
        if not below_ref < last < above_ref:
            return self._reject("oco_bad_prices")
        list_id = self._next("list")
        members = [
            self._new_order(q, side=side, otype=leg["type"], qty=q["quantity"], client_id=leg["client_id"],
                            price=leg["price"], stop=leg["stop"], tif=leg["tif"], list_id=list_id)
            for leg in (above, below)
        ]  # fmt: skip
        return self._place_list(q, "OCO", members, (members[0]["orderId"], members[1]["orderId"]))

    def _post_otoco(self, q: dict[str, str]) -> web.Response:
        for name in ("symbol", "workingType", "workingSide", "workingPrice", "workingQuantity", "pendingSide", "pendingQuantity"):
            if not q.get(name):
                return self._reject("missing", name)
        symbol = q["symbol"]
        if symbol not in self.markets:
            return _json(ERRORS["invalid_symbol"], 400)
        if q["workingType"] not in ("LIMIT", "LIMIT_MAKER"):
            return self._reject("invalid_order_type")
        for name, kind in (("workingQuantity", "qty"), ("pendingQuantity", "qty"), ("workingPrice", "price")):
            if (problem := self._check_number(symbol, q[name], kind)) is not None:
                return self._reject(problem, name)
        legs = self._oco_legs(q, "pending", q["pendingSide"])
        if isinstance(legs, web.Response):
            return legs
        ids = (q.get("listClientOrderId"), q.get("workingClientOrderId"), legs["above"]["client_id"], legs["below"]["client_id"])
        if self._duplicate(*ids):
            return self._reject("duplicate_order")
        list_id = self._next("list")
        working = self._new_order(q, side=q["workingSide"], otype=q["workingType"], qty=q["workingQuantity"],
                                  client_id=q.get("workingClientOrderId"), price=q["workingPrice"],
                                  tif=q.get("workingTimeInForce"), list_id=list_id)  # fmt: skip
        pending = [
            self._new_order(q, side=q["pendingSide"], otype=leg["type"], qty=q["pendingQuantity"], client_id=leg["client_id"],
                            price=leg["price"], stop=leg["stop"], tif=leg["tif"], list_id=list_id, status="PENDING_NEW")
            for leg in (legs["above"], legs["below"])
        ]  # fmt: skip
        return self._place_list(q, "OTO", [working, *pending], (pending[0]["orderId"], pending[1]["orderId"]))

    def _find_order(self, q: dict[str, str]) -> dict[str, Any] | web.Response:
        if not q.get("symbol"):
            return self._reject("missing", "symbol")
        if "orderId" in q:
            order = self.orders.get(int(q["orderId"]))
        elif "origClientOrderId" in q:
            order = self._newest(q["origClientOrderId"])
        else:
            return self._reject("missing", "orderId")
        if order is None or order["symbol"] != q["symbol"]:
            return self._reject("order_does_not_exist")
        return order

    def _get_order(self, q: dict[str, str]) -> web.Response:
        order = self._find_order(q)
        if isinstance(order, web.Response):
            return order
        return _json(dict(order))

    def _delete_order(self, q: dict[str, str]) -> web.Response:
        order = self._find_order(q)
        if isinstance(order, web.Response):
            return self._reject("unknown_order") if order.status == 400 else order
        if order["status"] not in OPEN:
            return self._reject("unknown_order")
        olist = self.lists.get(order["orderListId"])
        for member in [self.orders[i] for i in olist["orderIds"]] if olist else [order]:
            if member["status"] in OPEN:  # cancelling one order of a list cancels the whole list
                member.update(status="CANCELED", updateTime=self.now_ms)
        if olist:
            olist.update(listStatusType="ALL_DONE", listOrderStatus="ALL_DONE")
        cancel_id = q.get("newClientOrderId") or f"stubcancel{self._next('order')}"
        doc = self._order_response(order, "RESULT", [])
        return _json(doc | {"origClientOrderId": order["clientOrderId"], "clientOrderId": cancel_id})

    def _open_orders(self, q: dict[str, str]) -> web.Response:
        wanted = q.get("symbol")
        return _json([o for o in self.orders.values() if o["status"] in OPEN and wanted in (None, o["symbol"])])

    def _all_orders(self, q: dict[str, str]) -> web.Response:
        if not q.get("symbol"):
            return self._reject("missing", "symbol")
        rows = [o for o in self.orders.values() if o["symbol"] == q["symbol"]]
        rows = [o for o in rows if o["orderId"] >= int(q.get("orderId", 0))]
        rows = [o for o in rows if int(q.get("startTime", 0)) <= o["time"] <= int(q.get("endTime", 2**62))]
        limit = min(int(q.get("limit", 500)), 1000)
        return _json(rows[:limit] if "orderId" in q or "startTime" in q else rows[-limit:])

    def _my_trades(self, q: dict[str, str]) -> web.Response:
        if not q.get("symbol"):
            return self._reject("missing", "symbol")
        rows = [t for t in self.trades if t["symbol"] == q["symbol"]]
        if "orderId" in q:
            rows = [t for t in rows if t["orderId"] == int(q["orderId"])]
        return _json(rows[-min(int(q.get("limit", 500)), 1000):])

    # --- dispatch -----------------------------------------------------------------
    def _scripted(self, path: str, method: str, params: dict[str, str]) -> str | None:
        """The first scripted failure for this request, taken off the queue."""
        queue = self._failures[path]
        kinds = {params.get(k) for k in ("type", "aboveType", "belowType", "workingType", "pendingAboveType", "pendingBelowType")}
        for index, (name, want_method, want_type) in enumerate(queue):
            if (want_method is None or want_method == method) and (want_type is None or want_type in kinds):
                del queue[index]
                return name
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.text() if request.can_read_body else ""
        params = dict(request.query)
        if body and request.content_type == "application/x-www-form-urlencoded":
            params |= dict(await request.post())
        headers = tuple((k, v) for k, v in request.headers.items())
        self.requests.append(Logged(request.path, params, request.method, request.query_string, body, headers))
        name = self._scripted(request.path, request.method, params)
        if name == "timeout":
            await asyncio.sleep(self.hang_seconds)  # ccxt gives up first; the handler is cancelled
        elif name is not None and name != "lost":
            status, failure = FAILURES[name]
            retry = {"Retry-After": "1"} if status in (418, 429) else {}
            if isinstance(failure, dict):
                return _json(failure, status, retry)
            return web.Response(status=status, text=failure, content_type="text/html", headers=retry)
        routes = {
            ("GET", "/api/v3/exchangeInfo"): self._exchange_info,
            ("GET", "/api/v3/klines"): self._klines,
            ("GET", "/api/v3/ticker/24hr"): self._ticker,
            ("GET", "/api/v3/time"): lambda q: _json({"serverTime": self.now_ms}),
            ("GET", "/api/v3/ping"): lambda q: _json({}),
        }
        signed = {
            ("POST", "/api/v3/order"): self._post_order,
            ("POST", "/api/v3/orderList/oco"): self._post_oco,
            ("POST", "/api/v3/orderList/otoco"): self._post_otoco,
            ("GET", "/api/v3/order"): self._get_order,
            ("DELETE", "/api/v3/order"): self._delete_order,
            ("GET", "/api/v3/openOrders"): self._open_orders,
            ("GET", "/api/v3/allOrders"): self._all_orders,
            ("GET", "/api/v3/myTrades"): self._my_trades,
        }
        key = (request.method, request.path)
        if key in signed:
            if not request.headers.get("X-MBX-APIKEY"):
                return _json(ORDER_ERRORS["api_key_format"], 401)
            for needed in ("timestamp", "signature"):  # present, but the signature is not verified
                if needed not in params:
                    return self._reject("missing", needed)
            route = signed[key]
        else:
            route = routes.get(key)  # type: ignore[assignment]
        if route is None:
            page = "<html><body><h1>404 Not Found</h1></body></html>"
            return web.Response(status=404, text=page, content_type="text/html")
        response = route(params)
        if name == "lost":  # executed, but the answer never arrives: the gateway gives up
            return web.Response(status=504, text=FAILURES["504"][1], content_type="text/html")  # type: ignore[arg-type]
        return response

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
