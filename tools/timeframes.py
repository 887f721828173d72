"""Timeframe arithmetic shared by every data source and node.

Candles are identified by their *open* time; a candle is closed once
``open_time + period <= clock``. Weeks are calendar weeks starting Monday
00:00 UTC, days start at 00:00 UTC, as on every major exchange.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

TIMEFRAMES: dict[str, timedelta] = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "30m": timedelta(minutes=30),
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "1d": timedelta(days=1),
    "1w": timedelta(weeks=1),
}

# 1970-01-05 was a Monday: weekly buckets counted from it are calendar weeks.
_WEEK_ORIGIN = datetime(1970, 1, 5, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class UnknownTimeframe(ValueError):
    """A timeframe string that is not one of :data:`TIMEFRAMES`."""


def period(timeframe: str) -> timedelta:
    try:
        return TIMEFRAMES[timeframe]
    except KeyError:
        known = ", ".join(TIMEFRAMES)
        raise UnknownTimeframe(f"unknown timeframe {timeframe!r}; known: {known}") from None


def sort_timeframes(timeframes: list[str]) -> list[str]:
    """Smallest period first, duplicates removed."""
    return sorted(set(timeframes), key=period)


def as_utc(moment: datetime) -> datetime:
    """Naive datetimes are taken to be UTC; aware ones are converted."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def floor_time(moment: datetime, timeframe: str) -> datetime:
    """Open time of the candle of ``timeframe`` that contains ``moment``."""
    step = period(timeframe)
    moment = as_utc(moment)
    origin = _WEEK_ORIGIN if timeframe == "1w" else _EPOCH
    return origin + ((moment - origin) // step) * step


def last_closed_open_time(clock: datetime, timeframe: str) -> datetime:
    """Open time of the newest candle that has closed at ``clock``."""
    return floor_time(clock, timeframe) - period(timeframe)
