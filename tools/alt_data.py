"""The slot for alternative data (sentiment, on-chain). Providers plug in here; none ship yet."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class AltDataProvider(Protocol):
    name: str

    async def fetch(self, symbol: str, as_of: datetime) -> dict[str, float]:
        """Named figures known at `as_of` (never later), e.g. {"funding_rate": 0.0001}."""
        ...


PROVIDERS: dict[str, AltDataProvider] = {}


def configured_providers(names: list[str]) -> list[AltDataProvider]:
    unknown = [name for name in names if name not in PROVIDERS]
    if unknown:
        raise ValueError(f"unknown alternative-data providers {unknown}; available: {sorted(PROVIDERS) or 'none'}")
    return [PROVIDERS[name] for name in names]
