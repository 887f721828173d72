"""Notifications: delivery over real HTTP to a local receiver, retries, and which audit records notify.

No internet is reachable here, so a small ``http.server`` on 127.0.0.1 stands in
for both the webhook receiver and Telegram's Bot API; it runs in its own thread
so a test can hold a request open while the event loop carries on.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from langgraph.types import Interrupt

from api.audit_trail import records_from_update
from api.notifications import notifications_for
from nodes.common import event
from state import Settings
from state.portfolio import Position
from state.sections import ApprovalRequest, OrdersSection
from tools.audit_log import AuditRecord
from tools.governor import Governor
from tools.notify import Notification, Notifier, TelegramChannel, WebhookChannel
from tools.storage import open_storage

from tests.webhook_receiver import Receiver

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TOKEN = "123456:AAE-secret_token-value"
FAST = {"backoff_base": 0.001, "backoff_max": 0.005}  # keeps the retry tests in milliseconds


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def note(title: str = "halted", kind: str = "governor_halted") -> Notification:
    return Notification(kind=kind, title=title, text="text of " + title, thread_id="governor", at=AT, detail={"by": "cli"})


async def test_webhook_receives_the_notification_as_json(receiver: Receiver) -> None:
    """The local server stands in for the webhook receiver because no internet is reachable here."""
    notifier = Notifier([WebhookChannel(receiver.url + "/hook")], **FAST)
    notifier.start()
    assert notifier.publish(note("first"))
    await notifier.aclose()
    assert receiver.hits == ["/hook"]
    assert receiver.bodies == [note("first").model_dump(mode="json")]
    assert notifier.delivered["webhook"] == 1 and notifier.failed["webhook"] == 0


@pytest.mark.parametrize("status", [503, 429])
async def test_503s_and_429s_are_retried_until_delivered(receiver: Receiver, status: int) -> None:
    """The local server stands in for the webhook receiver because no internet is reachable here."""
    receiver.fail_next, receiver.fail_status = 2, status
    notifier = Notifier([WebhookChannel(receiver.url)], attempts=4, **FAST)
    notifier.start()
    notifier.publish(note())
    await notifier.aclose()
    assert len(receiver.hits) == 3 and len(receiver.bodies) == 1
    assert notifier.tries["webhook"] == 3 and notifier.delivered["webhook"] == 1


async def test_a_400_is_not_retried(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    """The local server stands in for the webhook receiver because no internet is reachable here."""
    receiver.status = 400
    notifier = Notifier([WebhookChannel(receiver.url)], attempts=4, **FAST)
    notifier.start()
    notifier.publish(note())
    await notifier.aclose()
    assert len(receiver.hits) == 1
    assert notifier.failed["webhook"] == 1 and notifier.delivered["webhook"] == 0
    assert "HTTP 400" in caplog.text


async def test_unreachable_receiver_fails_quietly_after_all_attempts() -> None:
    """No server listens on the port, standing in for a webhook receiver that is down (no internet here either)."""
    notifier = Notifier([WebhookChannel(f"http://127.0.0.1:{closed_port()}/hook")], attempts=3, **FAST)
    notifier.start()
    assert notifier.publish(note())  # returns without awaiting anything: the delivery has not even begun
    assert notifier.pending == 1 and notifier.tries["webhook"] == 0
    await notifier.aclose()
    assert notifier.tries["webhook"] == 3 and notifier.failed["webhook"] == 1 and notifier.delivered["webhook"] == 0


async def test_publish_returns_while_a_delivery_hangs(receiver: Receiver) -> None:
    """The local server stands in for the webhook receiver because no internet is reachable here."""
    receiver.gate = threading.Event()
    notifier = Notifier([WebhookChannel(receiver.url)], **FAST)
    notifier.start()
    notifier.publish(note("first"))
    assert await asyncio.to_thread(receiver.arrived.wait, 5)  # the worker is now stuck inside the POST
    assert notifier.publish(note("second"))
    assert receiver.bodies == [] and notifier.pending == 1
    receiver.gate.set()
    await notifier.aclose()
    assert [body["title"] for body in receiver.bodies] == ["first", "second"]


async def test_telegram_posts_to_the_bot_path_and_never_logs_the_token(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """The local server stands in for Telegram's Bot API because no internet is reachable here."""
    caplog.set_level(logging.DEBUG)  # httpx logs every request URL at INFO
    notifier = Notifier([TelegramChannel(receiver.url + "/", TOKEN, "-100042")], attempts=2, **FAST)
    notifier.start()
    notifier.publish(note("delivered"))
    await notifier.aclose()
    assert receiver.hits == [f"/bot{TOKEN}/sendMessage"]
    assert receiver.bodies[0]["chat_id"] == "-100042"
    assert receiver.bodies[0]["text"] == "delivered\ntext of delivered"

    receiver.status = 503
    failing = Notifier([TelegramChannel(receiver.url, TOKEN, "-100042")], attempts=2, **FAST)
    failing.start()
    failing.publish(note("lost"))
    await failing.aclose()
    assert failing.failed["telegram"] == 1 and len(receiver.hits) == 3
    assert "HTTP 503" in caplog.text and "not delivered" in caplog.text
    assert TOKEN not in caplog.text and "secret_token" not in caplog.text


async def test_no_channels_means_a_no_op_notifier(make_settings: Callable[..., Settings]) -> None:
    """No receiver at all: nothing is configured, so nothing would reach a webhook or Telegram (no internet here)."""
    notifier = Notifier.from_settings(make_settings())
    notifier.start()
    assert not notifier.enabled and notifier.publish(note()) is False and notifier.pending == 0
    await notifier.aclose()
    half = Notifier.from_settings(make_settings(notify_telegram_bot_token=TOKEN))  # a token without a chat
    assert not half.enabled
    both = Notifier.from_settings(
        make_settings(notify_webhook_url="http://127.0.0.1:9/x", notify_telegram_bot_token=TOKEN, notify_telegram_chat_id="1", notify_attempts=2)
    )
    assert [c.name for c in both.channels] == ["webhook", "telegram"] and both.attempts == 2


async def test_a_full_queue_drops_the_oldest(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    """The local server stands in for the webhook receiver because no internet is reachable here."""
    notifier = Notifier([WebhookChannel(receiver.url)], queue_size=2, **FAST)
    for title in ("one", "two", "three"):  # not started yet: everything waits in the queue
        notifier.publish(note(title))
    assert notifier.pending == 2 and notifier.dropped == 1
    assert "dropped the oldest" in caplog.text
    notifier.start()
    await notifier.aclose()
    assert [body["title"] for body in receiver.bodies] == ["two", "three"]


# Classification. The records come from the same code paths that write them in a run.


def proposal() -> dict[str, Any]:
    return ApprovalRequest(
        thread_id="btc-1", symbol="BTC/USDT", side="buy", quantity=0.25, entry=60_000.0, stop=58_800.0, target=62_400.0,
        notional=15_000.0, risk_amount=300.0, reasons=["notional 15000.00 above 5000.00"], strategies=["ema_trend"],
        regime="TRENDING", reference_price=60_000.0, expires_at=AT + timedelta(minutes=15),
    ).model_dump(mode="json")


def test_an_approval_interrupt_becomes_approval_pending() -> None:
    """Classification only: no HTTP, so no stand-in server (and no internet) is needed."""
    records = records_from_update("btc-1", "__interrupt__", [Interrupt(value=proposal(), id="int-1")])
    [found] = notifications_for(records)
    assert found.kind == "approval_pending" and found.symbol == "BTC/USDT" and found.thread_id == "btc-1"
    assert found.detail["interrupt_id"] == "int-1"
    for part in ("BUY 0.25 BTC/USDT", "entry 60000", "stop 58800", "target 62400", "2026-03-01 12:15 UTC"):
        assert part in found.text


def test_a_breaker_trip_notifies() -> None:
    """Classification only: no HTTP, so no stand-in server (and no internet) is needed."""
    trip = event("risk", "SYS_COMMAND", "BREAKER_TRIPPED", AT, {"reason": "drawdown breaker: daily", "drawdowns": {"daily": 0.031}})
    [breaker] = notifications_for(records_from_update("eth-1", "risk", {"audit": [trip]}))
    assert breaker.kind == "breaker_tripped" and "daily 3.10%" in breaker.text


async def test_a_governor_halt_notifies(make_settings: Callable[..., Settings]) -> None:
    """Classification only: no HTTP, so no stand-in server (and no internet) is needed."""
    written: list[AuditRecord] = []

    class Capture:
        async def append(self, records: list[AuditRecord]) -> int:
            written.extend(records)
            return len(written)

    async with open_storage(make_settings()) as storage:
        governor = Governor(storage.ledger, Capture())  # type: ignore[arg-type]
        await governor.halt("operator kill switch", "dave", {})
        await governor.resume("dave")
    [halted] = notifications_for(written)  # the RESUME record notifies nobody
    assert halted.kind == "governor_halted" and halted.title == "Trading halted by dave"
    assert "operator kill switch" in halted.text


def test_a_fill_names_the_bracket_and_other_records_notify_nobody() -> None:
    """Classification only: no HTTP, so no stand-in server (and no internet) is needed."""
    position = Position(
        bracket_id="b-1", thread_id="sol-1", symbol="SOL/USDT", broker="paper", side="buy", quantity=3.0,
        entry_price=150.5, stop=145.0, target=161.0, status="open", created_at=AT,
    )
    filled = event("execute", "ORDER_FILLED", "BUY", AT, {"bracket_id": "b-1", "fill_price": 150.5, "fee": 0.45, "status": "open"})
    update = {"orders": OrdersSection(as_of=AT, produced_by="execute", broker="paper", orders=[], position=position), "audit": [filled]}
    [fill] = notifications_for(records_from_update("sol-1", "execute", update))
    assert fill.kind == "order_filled" and fill.symbol == "SOL/USDT"
    assert "BUY 3 SOL/USDT filled at 150.5" in fill.text and "stop 145" in fill.text
    [bare] = notifications_for(records_from_update("sol-1", "execute", {"audit": [filled]}))
    assert bare.symbol is None and "150.5" in bare.text
    quiet = [
        AuditRecord(thread_id="sol-1", node="risk", event="ANALYSIS_UPDATE", verdict="APPROVED"),
        AuditRecord(thread_id="governor", node="governor", event="SYS_COMMAND", verdict="RESUME", payload={"by": "dave"}),
    ]
    assert notifications_for(quiet) == []
