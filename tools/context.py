"""The services a run's nodes reach through LangGraph's runtime context."""

from __future__ import annotations

from dataclasses import dataclass

from state import Settings
from state.sections import RunRequest
from tools.brokers import Broker, PaperBroker
from tools.frames import FrameCache
from tools.market_data import open_source


@dataclass(frozen=True)
class Services:
    settings: Settings
    frames: FrameCache
    broker: Broker


def build_services(settings: Settings, request: RunRequest, *, frames: FrameCache | None = None) -> Services:
    """Services for one run. Only the paper broker exists yet; replays must always get it."""
    if frames is None:
        source = open_source(request.source, scenario=request.scenario)
        frames = FrameCache(source, source_key=f"{request.source}:{request.scenario}", limit=settings.candle_limit)
    broker = PaperBroker(fee_rate=settings.fee_rate, slippage_bps=settings.slippage_bps)
    return Services(settings=settings, frames=frames, broker=broker)
