"""The live broker: brackets on Binance spot through ccxt's async API, found again by client order id.

How a bracket is expressed (ccxt 4.5 has no unified spot OCO: the order lists go through
ccxt's implicit signed endpoints ``privatePostOrderListOco`` / ``privatePostOrderListOtoco``):

- Market entry: ``create_order(symbol, "market", side, qty, None, {"clientOrderId": "<id>-entry"})``
  (sent as ``newClientOrderId``), then ONE OCO list: LIMIT_MAKER take profit ``<id>-tp`` and
  STOP_LOSS ``<id>-sl`` (stopPrice; a market order once triggered, so it exits through a gap).
  Not two independent orders: on spot each resting sell locks its quantity, so a second
  full-size sell is refused (-2010 insufficient balance); an OCO locks once and the exchange
  cancels the twin itself. It covers what is owned: the fill less commission taken in base asset.
- Limit entry: ONE OTOCO list: the working LIMIT entry plus that OCO pair, held PENDING_NEW by
  Binance until the entry has fully filled: never a moment unprotected after the fill.
- Protection that cannot be placed rolls the entry back (cancelled if resting, flattened by a
  market order ``<id>-flat`` if filled) and :class:`BrokerError` says so.

Binance keeps client ids unique among OPEN orders only (a filled entry's id is accepted again),
so every placement first looks the bracket up by client id (``fetch_order`` with
``origClientOrderId``) and a retried POST first checks whether the lost attempt went through.
Retries: :func:`tools.retry.call_with_retries`. Keys stay in the ccxt client: never in a log
line (ccxt's own DEBUG request log is redacted), ``repr`` or error message.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import ccxt.async_support as ccxt_async
import pandas as pd

from state.portfolio import Order, OrderRole, Position
from tools.brokers.base import BracketRequest, BrokerError, order_id
from tools.market_data.ccxt_source import redirect_urls, spot_only
from tools.retry import call_with_retries, transient

log = logging.getLogger(__name__)
T = TypeVar("T")
Found = dict[str, dict[str, Any]]  # role -> ccxt order structure

_OPEN = ("NEW", "PARTIALLY_FILLED", "PENDING_NEW")
_EXITS = {"stop_loss": "stop", "take_profit": "target", "flatten": "rollback"}
_LEGS: tuple[OrderRole, ...] = ("entry", "stop_loss", "take_profit")
_FROM_REQUEST = {"thread_id", "quantity", "entry_type", "limit_price", "stop", "target", "risk_amount"}
_FROM_REQUEST |= {"strategies", "tags"}  # what only the run knows


def _raw(order: dict[str, Any], key: str) -> str:
    return str(order["info"].get(key) or "0")


def _filled(order: dict[str, Any]) -> float:
    return float(_raw(order, "executedQty"))


def _average(order: dict[str, Any]) -> float | None:
    qty = _filled(order)
    return float(_raw(order, "cummulativeQuoteQty")) / qty if qty else None


def _when(ms: Any) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC) if ms else None


class _Redacting(logging.LoggerAdapter):  # type: ignore[type-arg]
    """ccxt logs every request's headers at DEBUG, the API key among them: scrub before logging."""

    def __init__(self, logger: logging.Logger, scrub: Callable[[object], str]) -> None:
        super().__init__(logger, {})
        self._clean = scrub

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            self.logger.log(level, self._clean(str(msg) % args if args else msg), **kwargs)


class CcxtBroker:
    live = True

    def __init__(
        self, exchange_id: str, *, api_key: str, secret: str, api_url: str | None = None,
        max_attempts: int = 4, base_delay: float = 0.5, max_delay: float = 8.0,
    ) -> None:  # fmt: skip
        if exchange_id != "binance":
            raise ValueError(f"the live broker trades Binance spot order lists only, not {exchange_id!r}")
        if not api_key or not secret:
            raise ValueError("the live broker needs an API key and secret")
        self.name = f"{exchange_id}-live"
        self.exchange_id, self.api_url = exchange_id, api_url
        self.max_attempts, self.base_delay, self.max_delay = max_attempts, base_delay, max_delay
        self._hidden = (api_key, secret)
        config = {"apiKey": api_key, "secret": secret, "enableRateLimit": True}
        self._exchange: Any = getattr(ccxt_async, exchange_id)(config)
        options = self._exchange.options
        spot_only(options)
        options["fetchCurrencies"] = options["fetchMargins"] = False  # both need sapi, not spot trading
        self._exchange.has["fetchCurrencies"] = False
        self._exchange.logger = _Redacting(logging.getLogger(f"{__name__}.ccxt"), self._scrub)
        if api_url is not None:
            self._exchange.urls["api"] = redirect_urls(self._exchange.urls["api"], api_url.rstrip("/"))

    def __repr__(self) -> str:
        return f"CcxtBroker(name={self.name!r}, api_url={self.api_url!r})"

    __str__ = __repr__

    # --- plumbing ------------------------------------------------------------------
    def _scrub(self, text: object) -> str:
        clean = re.sub(r"signature=[0-9a-fA-F]+", "signature=***", str(text))
        for hidden in self._hidden:
            clean = clean.replace(hidden, "***")
        return clean

    async def _call(self, what: str, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        try:
            return await call_with_retries(
                fn, *args, attempts=self.max_attempts, base_delay=self.base_delay, max_delay=self.max_delay, **kwargs
            )
        except ccxt_async.BaseError as error:
            tries = f"after {self.max_attempts} attempts" if transient(error) else "(not retryable)"
            why = f"{type(error).__name__}: {self._scrub(error)}"
            raise BrokerError(f"{self.name}: {what} failed {tries}: {why}") from error

    async def _market(self, symbol: str) -> dict[str, Any]:
        await self._call("load_markets", self._exchange.load_markets)
        if symbol not in self._exchange.markets:
            raise BrokerError(f"{self.name}: {symbol} is not a spot market")
        return self._exchange.market(symbol)

    def _amount(self, symbol: str, qty: float) -> str:
        try:
            return self._exchange.amount_to_precision(symbol, qty)
        except ccxt_async.BaseError as error:
            raise BrokerError(f"{self.name}: quantity {qty} of {symbol}: {self._scrub(error)}") from error

    async def _fetch(self, symbol: str, client_id: str) -> dict[str, Any] | None:
        try:  # Binance answers the newest order with this client id
            return await self._exchange.fetch_order("", symbol, {"origClientOrderId": client_id})
        except ccxt_async.OrderNotFound:
            return None

    async def _orders(self, bid: str, symbol: str) -> Found:
        """Every order of the bracket the exchange knows, by role; empty if it never saw the entry."""
        await self._market(symbol)
        roles = ("entry", "stop_loss", "take_profit", "flatten")
        ids = [order_id(bid, role) for role in roles]
        orders = await asyncio.gather(*(self._call(f"fetch_order({cid})", self._fetch, symbol, cid) for cid in ids))
        found = {role: order for role, order in zip(roles, orders, strict=True) if order is not None}
        return found if "entry" in found else {}

    async def _submit(self, what: str, symbol: str, ids: dict[str, str], post: Callable[[], Awaitable[Found]]) -> Found:
        """POST with retries; before each retry, adopt what a lost attempt may have placed."""
        tried = False

        async def attempt() -> Found:
            nonlocal tried
            if tried:
                existing = {role: await self._fetch(symbol, cid) for role, cid in ids.items()}
                existing = {role: o for role, o in existing.items() if o is not None}
                if existing:
                    log.warning("%s: %s went through before its answer was lost; adopting it", self.name, what)
                    return existing
            tried = True
            return await post()

        return await self._call(what, attempt)

    async def _cancel(self, symbol: str, cid: str) -> None:
        try:
            await self._call(f"cancel {cid}", self._exchange.cancel_order, "", symbol, {"origClientOrderId": cid})
        except BrokerError as error:
            if isinstance(error.__cause__, ccxt_async.BaseError) and transient(error.__cause__):
                raise
            log.info("%s: %s was no longer open: %s", self.name, cid, error)  # the refetch tells what it became

    async def _fees(self, symbol: str, order: dict[str, Any]) -> tuple[float, float]:
        """(fee in quote, fee paid in the base asset) of a filled order, from its fills or else its trades."""
        if not _filled(order):
            return 0.0, 0.0
        market, price = self._exchange.market(symbol), _average(order) or 0.0
        parts = [(f, price) for f in order.get("fees") or [] if f and f.get("cost") is not None]
        if not parts:  # a queried order carries no fills
            what = f"fetch_order_trades({order['clientOrderId']})"
            trades = await self._call(what, self._exchange.fetch_order_trades, order["id"], symbol)
            parts = [(t["fee"], t["price"]) for t in trades if (t.get("fee") or {}).get("cost") is not None]
        quote = base = 0.0
        for fee, at in parts:
            if fee["currency"] == market["quote"]:
                quote += fee["cost"]
            elif fee["currency"] == market["base"]:
                base, quote = base + fee["cost"], quote + fee["cost"] * at
            else:  # e.g. BNB: not convertible without another market's price
                log.warning("%s: %s %s fee left out", order["clientOrderId"], fee["cost"], fee["currency"])
        return quote, base

    # --- building the position ---------------------------------------------------------
    @staticmethod
    def _order(role: OrderRole, o: dict[str, Any], fee: float) -> Order:
        kind, status, filled = _raw(o, "type"), _raw(o, "status"), _filled(o) > 0
        otype = "market" if kind == "MARKET" else "stop" if kind.startswith("STOP_LOSS") else "limit"
        price = None if otype == "market" else float(_raw(o, "stopPrice" if otype == "stop" else "price"))
        done = {"FILLED": "filled", "REJECTED": "rejected"}
        return Order(
            client_order_id=o["clientOrderId"], role=role, side=o["side"], type=otype, price=price,
            quantity=float(_raw(o, "origQty")), status="open" if status in _OPEN else done.get(status, "cancelled"),
            fill_price=_average(o), fee=fee if filled else 0.0, exchange_order_id=str(o["id"]),
            filled_at=_when(o.get("lastTradeTimestamp") or o.get("timestamp")) if filled else None,
        )  # fmt: skip

    async def _state(self, symbol: str, found: Found, known: list[Order] | None = None) -> dict[str, Any]:
        """The position fields the exchange decides: status, fills, exit, fees, orders."""
        entry = found["entry"]
        exit_role = next((r for r in _EXITS if r in found and _raw(found[r], "status") == "FILLED"), None)
        paid = {o.client_order_id: o.fee for o in known or [] if o.status == "filled"}
        fees = {}
        for role in ("entry", exit_role) if exit_role else ("entry",):
            cid = found[role]["clientOrderId"]
            fees[role] = paid[cid] if cid in paid else (await self._fees(symbol, found[role]))[0]
        resting = _raw(entry, "status") in _OPEN
        status = "pending" if resting else "cancelled" if not _filled(entry) else "closed" if exit_role else "open"
        fields: dict[str, Any] = {
            "status": status, "entry_price": _average(entry), "fees": sum(fees.values()),
            "opened_at": _when(entry.get("lastTradeTimestamp") or entry.get("timestamp")) if _filled(entry) else None,
            "orders": [self._order(r, found[r], fees.get(r, 0.0)) for r in _LEGS if r in found],
            "exit_reason": "cancelled" if status == "cancelled" else None,
        }  # fmt: skip
        if "stop_loss" in found and "take_profit" in found:
            fields["stop"] = float(_raw(found["stop_loss"], "stopPrice"))
            fields["target"] = float(_raw(found["take_profit"], "price"))
        if exit_role is not None:
            out, sign = found[exit_role], 1 if entry["side"] == "buy" else -1
            price = _average(out) or 0.0
            pnl = sign * (price - (_average(entry) or 0.0)) * _filled(out) - fields["fees"]
            closed_at = _when(out.get("lastTradeTimestamp") or out.get("timestamp"))
            fields |= {"exit_price": price, "exit_reason": _EXITS[exit_role], "closed_at": closed_at,
                       "realized_pnl": pnl, "unrealized_pnl": None}  # fmt: skip
        return fields

    async def _position(self, bid: str, symbol: str, found: Found, request: BracketRequest | None) -> Position:
        fields = await self._state(symbol, found)
        entry = found["entry"]
        base: dict[str, Any] = {"bracket_id": bid, "symbol": symbol, "broker": self.name, "side": entry["side"]}
        if request is not None:
            base |= request.model_dump(include=_FROM_REQUEST) | {"created_at": request.as_of}
        elif "stop" not in fields:
            have = ", ".join(sorted(found))
            raise BrokerError(f"{self.name}: bracket {bid} has {have} but no stop/target legs to rebuild it from")
        else:
            limit = _raw(entry, "type") == "LIMIT"
            base |= {"quantity": float(_raw(entry, "origQty")), "entry_type": "limit" if limit else "market",
                     "limit_price": float(_raw(entry, "price")) if limit else None,
                     "created_at": _when(entry.get("timestamp"))}  # fmt: skip
        return Position(**(base | fields))

    # --- Broker ------------------------------------------------------------------------
    async def find(self, bracket_id: str, symbol: str | None = None) -> Position | None:
        """The bracket as the exchange knows it (not thread, strategies, tags, risk: those the ledger keeps).

        The live broker needs ``symbol``: Binance looks orders up per market.
        """
        if symbol is None:
            raise BrokerError(f"{self.name}: find({bracket_id!r}) needs symbol=: Binance looks orders up per market")
        found = await self._orders(bracket_id, symbol)
        return await self._position(bracket_id, symbol, found, None) if found else None

    async def place_bracket(self, request: BracketRequest) -> Position:
        bid, symbol = request.bracket_id, request.symbol
        found = await self._orders(bid, symbol)
        if "flatten" in found:
            flat = order_id(bid, "flatten")
            raise BrokerError(f"{self.name}: bracket {bid} was rolled back earlier ({flat}); not placing it again")
        if found:
            log.info("%s: bracket %s already at the exchange (%s): adopted", self.name, bid, ", ".join(found))
        elif request.entry_type == "limit":
            ids = {r: order_id(bid, r) for r in _LEGS}
            found = await self._submit(f"place OTOCO {bid}", symbol, ids, lambda: self._post_list(request, "otoco"))
        else:
            qty = float(self._amount(symbol, request.quantity))
            found = await self._market_order(symbol, bid, "entry", request.side, qty)
        legs = [found[r] for r in ("stop_loss", "take_profit") if r in found]
        owned = _filled(found["entry"]) and _raw(found["entry"], "status") not in _OPEN
        if owned and not any(_raw(o, "status") in (*_OPEN, "FILLED") for o in legs):  # owned and unprotected
            found |= await self._protect(request, found["entry"])
        return await self._position(bid, symbol, found, request)

    async def cancel(self, position: Position, reason: str) -> Position:
        """Cancel a resting entry (with its pending legs); an open position keeps its protection."""
        if position.status != "pending":
            return position  # never pull the stops of an open position
        bid, symbol = position.bracket_id, position.symbol
        await self._cancel(symbol, order_id(bid, "entry"))  # cancelling one order of a list cancels the list
        found = await self._orders(bid, symbol)
        if not found:
            raise BrokerError(f"{self.name}: bracket {bid} is not at the exchange")
        entry = found["entry"]
        if _filled(entry) and _raw(entry, "status") != "FILLED" and "flatten" not in found:
            found |= await self._flatten(symbol, bid, entry)  # a partial fill never armed its protection
        fields = await self._state(symbol, found, position.orders)
        if fields["status"] == "cancelled":
            fields["exit_reason"] = reason if reason in ("halt", "rollback") else "cancelled"
            fields["closed_at"] = _when(entry["info"].get("updateTime")) or datetime.now(UTC)
        return position.model_copy(update=fields)

    async def sync(self, position: Position, candles: pd.DataFrame) -> Position:
        """Fills from the exchange (an exit's twin is cancelled if it still rests), then the mark."""
        if not position.is_live:
            return position
        bid, symbol = position.bracket_id, position.symbol
        found = await self._orders(bid, symbol)
        if not found:
            raise BrokerError(f"{self.name}: bracket {bid} is not at the exchange")
        for role, twin in (("stop_loss", "take_profit"), ("take_profit", "stop_loss")):
            if role in found and twin in found and _raw(found[role], "status") == "FILLED":
                if _raw(found[twin], "status") in _OPEN:  # a real OCO expires it; make sure
                    await self._cancel(symbol, found[twin]["clientOrderId"])
                    found = await self._orders(bid, symbol)
        update = await self._state(symbol, found, position.orders)
        closes = candles["close"].dropna() if "close" in candles else pd.Series(dtype=float)
        if len(closes):
            mark, sign = float(closes.iloc[-1]), 1 if position.side == "buy" else -1
            update |= {"mark_price": mark, "marked_at": pd.Timestamp(closes.index[-1]).to_pydatetime()}
            if update["status"] == "open":
                held = float(_raw(found["stop_loss"], "origQty")) if "stop_loss" in found else _filled(found["entry"])
                update["unrealized_pnl"] = sign * (mark - update["entry_price"]) * held
        return position.model_copy(update=update)

    async def close(self) -> None:
        await self._exchange.close()

    # --- placing -----------------------------------------------------------------------
    async def _market_order(self, symbol: str, bid: str, role: str, side: str, qty: float) -> Found:
        cid, place = order_id(bid, role), self._exchange.create_order

        async def post() -> Found:  # ccxt sends clientOrderId as Binance's newClientOrderId
            return {role: await place(symbol, "market", side, qty, None, {"clientOrderId": cid})}

        return await self._submit(f"{role} {cid}", symbol, {role: cid}, post)

    async def _post_list(self, request: BracketRequest, kind: str, qty: str | None = None) -> Found:
        """POST an OCO (protection) or OTOCO (limit entry + protection) list; its orders by role."""
        symbol, bid, market = request.symbol, request.bracket_id, await self._market(request.symbol)
        price, exit_side = self._exchange.price_to_precision, "SELL" if request.side == "buy" else "BUY"
        tp_id, sl_id = order_id(bid, "take_profit"), order_id(bid, "stop_loss")
        tp = {"Type": "LIMIT_MAKER", "ClientOrderId": tp_id, "Price": price(symbol, request.target)}
        sl = {"Type": "STOP_LOSS", "ClientOrderId": sl_id, "StopPrice": price(symbol, request.stop)}
        legs = {"above": tp, "below": sl} if exit_side == "SELL" else {"above": sl, "below": tp}  # Binance's price rule
        params = {"symbol": market["id"], "listClientOrderId": bid, "newOrderRespType": "RESULT"}
        for where, leg in legs.items():  # aboveType, ... or, for the OTOCO's pending pair, pendingAboveType, ...
            params |= {(f"pending{where.title()}{k}" if kind == "otoco" else f"{where}{k}"): v for k, v in leg.items()}
        if kind == "otoco":
            amount = self._amount(symbol, request.quantity)
            params |= {"workingType": "LIMIT", "workingSide": request.side.upper(), "workingQuantity": amount,
                       "workingClientOrderId": order_id(bid, "entry"), "workingTimeInForce": "GTC",
                       "workingPrice": price(symbol, request.limit_price), "pendingSide": exit_side,
                       "pendingQuantity": amount}  # fmt: skip
            response = await self._exchange.privatePostOrderListOtoco(params)
        else:
            response = await self._exchange.privatePostOrderListOco(params | {"side": exit_side, "quantity": qty})
        roles = {order_id(bid, r): r for r in _LEGS}
        orders = [self._exchange.parse_order(report, market) for report in response["orderReports"]]
        return {roles[o["clientOrderId"]]: o for o in orders if o["clientOrderId"] in roles}

    async def _protect(self, request: BracketRequest, entry: dict[str, Any]) -> Found:
        """Place the OCO pair over a filled entry; roll the entry back if that fails."""
        bid, symbol, pair = request.bracket_id, request.symbol, ("stop_loss", "take_profit")
        try:
            base_fee = (await self._fees(symbol, entry))[1]
            qty = self._amount(symbol, _filled(entry) - base_fee)
            ids = {r: order_id(bid, r) for r in pair}
            return await self._submit(f"place OCO {bid}", symbol, ids, lambda: self._post_list(request, "oco", qty))
        except BrokerError as error:
            cause = str(error)
        try:  # every answer lost, yet the list may exist: then it protects and there is nothing to undo
            found = await self._orders(bid, symbol)
            if all(r in found and _raw(found[r], "status") in _OPEN for r in pair):
                return {r: found[r] for r in pair}
            undone = await self._flatten(symbol, bid, entry)
        except BrokerError as error:
            msg = f"protection failed ({cause}) AND the rollback failed ({error}): the entry may be NAKED"
            raise BrokerError(f"{self.name}: bracket {bid}: {msg}") from error
        how = f"entry flattened by {order_id(bid, 'flatten')}" if undone else "entry cancelled, nothing had filled"
        msg = f"protection could not be placed ({cause}); rolled back: {how}, no naked position"
        raise BrokerError(f"{self.name}: bracket {bid}: {msg}")

    async def _flatten(self, symbol: str, bid: str, entry: dict[str, Any]) -> Found:
        """Cancel the entry if it rests; close what it filled with an opposite market order ``<id>-flat``."""
        if _raw(entry, "status") in _OPEN:
            await self._cancel(symbol, entry["clientOrderId"])
            entry = await self._call("refetch entry", self._fetch, symbol, entry["clientOrderId"]) or entry
        held = _filled(entry) - (await self._fees(symbol, entry))[1]  # a buy's commission came out of the base asset
        if held <= 0:
            return {}
        side = "sell" if entry["side"] == "buy" else "buy"
        return await self._market_order(symbol, bid, "flatten", side, float(self._amount(symbol, held)))
