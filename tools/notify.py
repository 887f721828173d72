"""Outbound notifications (webhook, Telegram): a bounded queue drained by one background task.

A run must never wait on, or fail because of, a chat service: ``publish`` only
enqueues, and a delivery error ends in a log line and a counter. A full queue
drops its oldest entry: the newest (a fresh halt or approval) is the actionable one.

Retries cover what another attempt may cure: connection errors, timeouts,
HTTP 5xx and 429; any other 4xx (bad token, unknown chat) is final. ``tools.retry``
does not fit: its predicate is ccxt's error family and its log prints raw errors.

The Telegram token sits in the request path, so every text that may reach a
log passes through ``redact``, and httpx's own request log is filtered too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_random_exponential

from state.settings import Settings

log = logging.getLogger(__name__)

NotificationKind = Literal["approval_pending", "breaker_tripped", "governor_halted", "order_filled"]
TELEGRAM_MAX_TEXT = 4096  # Telegram refuses longer messages with a 400, which would never be retried
_BOT_PATH = re.compile(r"/bot[^/\s'\"]+")


class Notification(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: NotificationKind
    title: str
    text: str
    thread_id: str | None = None
    symbol: str | None = None
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    detail: dict[str, Any] = {}


class DeliveryError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class _HttpxTokenFilter(logging.Filter):
    """httpx logs every request URL at INFO; a Telegram URL holds the bot token in its path."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _BOT_PATH.sub("/bot<redacted>", record.getMessage())
        record.args = None
        return True


def _install_httpx_filter() -> None:
    httpx_log = logging.getLogger("httpx")
    if not any(isinstance(f, _HttpxTokenFilter) for f in httpx_log.filters):
        httpx_log.addFilter(_HttpxTokenFilter())


class Channel(Protocol):
    name: str

    def request(self, notification: Notification) -> tuple[str, dict[str, Any]]: ...  # URL and JSON body

    def redact(self, text: str) -> str: ...


class WebhookChannel:
    name = "webhook"

    def __init__(self, url: str) -> None:
        self.url = url

    def request(self, notification: Notification) -> tuple[str, dict[str, Any]]:
        return self.url, notification.model_dump(mode="json")

    def redact(self, text: str) -> str:
        return text


class TelegramChannel:
    name = "telegram"

    def __init__(self, api_url: str, token: SecretStr | str, chat_id: str) -> None:
        self._token = token if isinstance(token, SecretStr) else SecretStr(token)
        self.api_url = api_url.rstrip("/")
        self.chat_id = chat_id
        _install_httpx_filter()

    def request(self, notification: Notification) -> tuple[str, dict[str, Any]]:
        # Plain text on purpose: with a parse_mode, one unbalanced '_' in a symbol turns into a 400.
        text = f"{notification.title}\n{notification.text}"[:TELEGRAM_MAX_TEXT]
        url = f"{self.api_url}/bot{self._token.get_secret_value()}/sendMessage"
        return url, {"chat_id": self.chat_id, "text": text, "disable_web_page_preview": True}

    def redact(self, text: str) -> str:
        secret = self._token.get_secret_value()
        return _BOT_PATH.sub("/bot<redacted>", text.replace(secret, "<redacted>") if secret else text)


def _retryable(error: BaseException) -> bool:
    if isinstance(error, DeliveryError):
        return error.status is not None and (error.status >= 500 or error.status == 429)
    return isinstance(error, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError)


async def _post(client: httpx.AsyncClient, channel: Channel, notification: Notification) -> None:
    url, body = channel.request(notification)
    # Transport errors propagate unchanged so the retry predicate sees their type; callers redact them.
    response = await client.post(url, json=body)
    if response.is_success:
        return
    reason = channel.redact(response.text[:200])
    raise DeliveryError(f"{channel.name} answered HTTP {response.status_code}: {reason}", response.status_code)


class Notifier:
    """Fans notifications out to every channel off the caller's path; publish from the loop's thread only."""

    def __init__(
        self,
        channels: Sequence[Channel] = (),
        *,
        attempts: int = 4,
        timeout_seconds: float = 5.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        queue_size: int = 256,
        drain_seconds: float = 5.0,
    ) -> None:
        if attempts < 1 or queue_size < 1:
            raise ValueError("attempts and queue_size must be at least 1")
        self.channels = list(channels)
        self.attempts, self.timeout_seconds = attempts, timeout_seconds
        self.backoff_base, self.backoff_max, self.drain_seconds = backoff_base, backoff_max, drain_seconds
        # Per channel name; ``tries`` counts HTTP attempts, retries included.
        self.delivered, self.failed, self.tries = Counter[str](), Counter[str](), Counter[str]()
        self.dropped = 0
        self._queue: asyncio.Queue[Notification] = asyncio.Queue(maxsize=queue_size)
        self._client: httpx.AsyncClient | None = None
        self._worker: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> Notifier:
        channels: list[Channel] = []
        if settings.notify_webhook_url:
            channels.append(WebhookChannel(settings.notify_webhook_url))
        token, chat = settings.notify_telegram_bot_token, settings.notify_telegram_chat_id
        if token and chat:
            channels.append(TelegramChannel(settings.notify_telegram_api_url, token, chat))
        elif token or chat:
            log.warning("Telegram notifications need both a bot token and a chat id; Telegram is off")
        options.setdefault("attempts", settings.notify_attempts)
        options.setdefault("timeout_seconds", settings.notify_timeout_seconds)
        return cls(channels, **options)

    @property
    def enabled(self) -> bool:
        return bool(self.channels)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        """Start the worker on the running loop; a no-op without channels or when already started."""
        if not self.channels or self._worker is not None:
            return
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout_seconds))
        self._worker = asyncio.get_running_loop().create_task(self._drain(), name="notifier")

    def publish(self, notification: Notification) -> bool:
        """Queue for delivery and return at once; False when there is nowhere to deliver to."""
        if not self.channels:
            return False
        if self._queue.full():
            oldest = self._queue.get_nowait()
            self._queue.task_done()
            self.dropped += 1
            log.warning("notification queue full (%d): dropped the oldest, %s %r", self._queue.maxsize, oldest.kind, oldest.title)
        self._queue.put_nowait(notification)
        return True

    async def aclose(self, deadline: float | None = None) -> None:
        """Deliver what is queued for up to ``deadline`` seconds (default ``drain_seconds``), then stop."""
        worker, self._worker = self._worker, None
        if worker is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), self.drain_seconds if deadline is None else deadline)
            worker.cancel()  # a delivery still in flight past the deadline is abandoned with the rest
            await asyncio.gather(worker, return_exceptions=True)
        if self._queue.qsize():
            log.warning("notifier stopped with %d notification(s) undelivered", self._queue.qsize())
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _drain(self) -> None:
        while True:
            notification = await self._queue.get()
            try:
                await asyncio.gather(*(self._deliver(c, notification) for c in self.channels))
            finally:
                self._queue.task_done()

    async def _deliver(self, channel: Channel, notification: Notification) -> None:
        assert self._client is not None
        client = self._client

        async def attempt() -> None:
            self.tries[channel.name] += 1
            await _post(client, channel, notification)

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            log.warning(
                "%s attempt %d of %d failed (%s); retrying in %.2fs",
                channel.name, state.attempt_number, self.attempts, channel.redact(_describe(error)),
                state.next_action.sleep if state.next_action else 0.0,
            )

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_random_exponential(multiplier=self.backoff_base, max=self.backoff_max),
            retry=retry_if_exception(_retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            await retrying(attempt)
        except Exception as error:  # a notification is never worth a crash; the counter and log tell
            self.failed[channel.name] += 1
            where = notification.thread_id or "-"
            log.warning("%s notification %s for %s not delivered: %s", channel.name, notification.kind, where, channel.redact(_describe(error)))
        else:
            self.delivered[channel.name] += 1


def _describe(error: BaseException | None) -> str:
    # Our own messages never embed the URL; still, every caller passes the result through redact().
    return f"{type(error).__name__}: {error}" if error is not None else "unknown error"
