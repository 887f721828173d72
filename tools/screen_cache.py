"""What a scan's screening pass computed, handed to the same symbol's commit pass through LangGraph's node cache.

A scan screens every symbol without per-step checkpoints and re-runs only its trade
proposals with them (see `api/scan.py`). Both passes see the same request, clock and
candles, so the analysis and verification nodes would compute the same sections twice.
With this cache the commit pass takes the screen's writes instead: LangGraph records them in the thread's checkpoints
exactly as if the nodes had run, so the thread is as replayable as before, and a replay
(outside any scope) runs every node for real.

The cache only works inside `scope()`, one symbol's decision: elsewhere it neither finds
nor keeps anything, so ordinary runs, resumes, replays and forks on the same compiled
graph never see a cached write. Writes are kept as the objects the nodes returned (no
serialisation: most screens are never re-run) and dropped when the scope ends.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from langgraph.cache.base import BaseCache, FullKey, Namespace

_SCOPE: ContextVar[dict[FullKey, Any] | None] = ContextVar("aitrader_screen_scope", default=None)


class ScreenCache(BaseCache[Any]):
    @staticmethod
    @contextmanager
    def scope() -> Iterator[None]:
        """Node writes made inside are found again inside, and only there (asyncio tasks inherit it)."""
        token = _SCOPE.set({})
        try:
            yield
        finally:
            _SCOPE.reset(token)

    def get(self, keys: Sequence[FullKey]) -> dict[FullKey, Any]:
        entries = _SCOPE.get()
        if entries is None:
            return {}
        return {key: list(entries[key]) for key in keys if key in entries}

    async def aget(self, keys: Sequence[FullKey]) -> dict[FullKey, Any]:
        return self.get(keys)

    def set(self, pairs: Mapping[FullKey, tuple[Any, int | None]]) -> None:
        entries = _SCOPE.get()
        if entries is not None:
            entries.update((key, list(writes)) for key, (writes, _ttl) in pairs.items())

    async def aset(self, pairs: Mapping[FullKey, tuple[Any, int | None]]) -> None:
        self.set(pairs)

    def clear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        entries = _SCOPE.get()
        if entries is not None:
            for key in [k for k in entries if namespaces is None or k[0] in namespaces]:
                del entries[key]

    async def aclear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        self.clear(namespaces)


def screen_key(task_input: Any) -> str:
    """Tells one task of a lifecycle from another in the same scope: the node name is in the
    cache's namespace already, so only the fan-out's branch (which strategy, which operator
    signal) and the request's moment are left to name."""
    if not isinstance(task_input, Mapping):
        return repr(task_input)
    request = task_input.get("request")
    moment = f"{getattr(request, 'symbol', '')}@{getattr(request, 'as_of', '')}"
    return f"{moment}|{task_input.get('strategy', '')}|{task_input.get('index', '')}"
