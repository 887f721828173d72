"""Which exchange errors are worth retrying, and a bounded retry loop around one call.

Shared by the ccxt market-data source and the live broker, so both agree on what
"transient" means. Only ccxt's ``NetworkError`` family is transient: the request
may not have reached the exchange, or the exchange asked us to slow down
(``RequestTimeout``, ``ExchangeNotAvailable``/``OnMaintenance``, ``DDoSProtection``,
``RateLimitExceeded``, ``InvalidNonce``). An ``ExchangeError`` is the exchange's
considered answer (bad key, unknown symbol, no funds): asking again returns the same
answer and, for a broker, could repeat a side effect, so it is raised at once.

Callers that place orders must make the call idempotent (client order ids) before
retrying it: a timed-out request may still have been executed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import ccxt
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

log = logging.getLogger(__name__)

T = TypeVar("T")

# Never transient, even if a future ccxt release re-parents one of them under NetworkError.
_PERMANENT: tuple[type[BaseException], ...] = (ccxt.AuthenticationError, ccxt.BadSymbol, ccxt.InsufficientFunds)


# Binance -2015 "Invalid API-key, IP, or permissions": after one successful private call ccxt maps
# it to DDoSProtection (a NetworkError), yet a revoked key stays revoked however often we ask.
_PERMANENT_CODES = ('"code":-2015', '"code": -2015')


def transient(error: BaseException) -> bool:
    """True for errors that another attempt may cure (ccxt's NetworkError family)."""
    if any(code in str(error) for code in _PERMANENT_CODES):
        return False
    return isinstance(error, ccxt.NetworkError) and not isinstance(error, _PERMANENT)


def _log_retry(state: Any) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning(
        "attempt %d of %s failed with %s: %s; retrying in %.2fs",
        state.attempt_number,
        getattr(state.fn, "__qualname__", state.fn),
        type(error).__name__,
        error,
        state.next_action.sleep if state.next_action else 0.0,
    )


async def call_with_retries(
    fn: Callable[..., Awaitable[T]],
    *args: Any,
    attempts: int,
    base_delay: float,
    max_delay: float,
    **kwargs: Any,
) -> T:
    """Await ``fn(*args, **kwargs)``, retrying transient errors up to ``attempts`` calls in all.

    Backoff is exponential with full jitter (uniform in [0, min(max_delay, base_delay * 2**n)]),
    so many runs hitting the same rate limit do not come back in lockstep. The last error
    (or the first non-transient one) is re-raised unchanged; the caller decides how to report it.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    retrying = AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=base_delay, max=max_delay),
        retry=retry_if_exception(transient),
        before_sleep=_log_retry,
        reraise=True,
    )
    return await retrying(fn, *args, **kwargs)
