"""A small time-to-live cache: verdicts that may be reused for a while, then asked again."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

ValueT = TypeVar("ValueT")


class TtlCache(Generic[ValueT]):
    def __init__(self, *, max_entries: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[Hashable, tuple[float, ValueT]] = {}
        self._max_entries = max_entries
        self._clock = clock

    def get(self, key: Hashable) -> ValueT | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        return value

    def put(self, key: Hashable, value: ValueT, ttl: float) -> None:
        if len(self._entries) >= self._max_entries:
            now = self._clock()
            self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
            if len(self._entries) >= self._max_entries:
                self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (self._clock() + ttl, value)
