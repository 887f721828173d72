"""The services a run's nodes reach through LangGraph's runtime context, and who owns them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from langchain_core.language_models import BaseChatModel

from state import Settings
from state.sections import RunRequest
from tools.brokers import Broker, PaperBroker
from tools.candle_store import CandleStore
from tools.frames import FrameCache
from tools.market_data import MarketDataSource, open_source
from tools.market_data.stored import StoredSource
from tools.timeframes import floor_time
from tools.ttl_cache import TtlCache


@dataclass(frozen=True)
class Services:
    settings: Settings
    source: MarketDataSource
    frames: FrameCache
    broker: Broker
    llm: BaseChatModel | None = None
    verdicts: TtlCache = field(default_factory=TtlCache)


SourceKey = tuple[str, str | None, str | None, str]


class ServiceHub:
    """Owns what outlives one run in a process: sources (and their sessions), indicator caches, the LLM.

    Runs of the same data source share one source and one indicator cache, so a
    scan does not open a connection or compute an indicator twice.
    """

    def __init__(self, settings: Settings, candles: CandleStore | None = None, llm: BaseChatModel | None = None) -> None:
        self.settings = settings
        self._candles = candles
        self._llm = llm
        self._sources: dict[SourceKey, tuple[MarketDataSource, FrameCache]] = {}
        self._verdicts: TtlCache = TtlCache()

    def _source(self, request: RunRequest) -> tuple[MarketDataSource, FrameCache]:
        key: SourceKey = (request.source, request.scenario, request.data_dir, request.exchange)
        if key not in self._sources:
            source = open_source(
                request.source,
                scenario=request.scenario,
                data_dir=request.data_dir,
                exchange=request.exchange,
                api_url=self.settings.exchange_api_url,
            )
            # Synthetic candles are a pure function of (symbol, scenario, clock): storing them buys nothing.
            if request.source != "builtin" and self._candles is not None:
                source = StoredSource(source, self._candles, request.exchange)
            frames = FrameCache(source, source_key=":".join(str(part) for part in key), limit=self.settings.candle_limit)
            self._sources[key] = (source, frames)
        return self._sources[key]

    def for_request(self, request: RunRequest) -> Services:
        # Each run gets a fresh paper broker; replays and forks always get paper, never a live broker.
        source, frames = self._source(request)
        broker = PaperBroker(fee_rate=self.settings.fee_rate, slippage_bps=self.settings.slippage_bps)
        return Services(settings=self.settings, source=source, frames=frames, broker=broker, llm=self._llm, verdicts=self._verdicts)

    async def clock_for(self, request: RunRequest) -> datetime:
        """Live sources decide now; offline files decide at their newest candle."""
        if request.as_of is not None:
            return request.as_of
        source, _ = self._source(request)
        inner = source.inner if isinstance(source, StoredSource) else source
        latest_close = getattr(inner, "latest_close", None)
        if request.source == "files" and latest_close is not None:
            latest = latest_close(request.symbol, request.timeframes[0])
            if latest is not None:
                return latest
        return floor_time(datetime.now(UTC), "1m")

    async def aclose(self) -> None:
        for source, _ in self._sources.values():
            await source.close()
        self._sources.clear()


def build_services(settings: Settings, request: RunRequest) -> Services:
    """Services for one run without a database (tests, Studio): built-in and file data read directly."""
    return ServiceHub(settings).for_request(request)
