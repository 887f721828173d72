"""The services a run's nodes reach through LangGraph's runtime context, and who owns them."""

from __future__ import annotations

import asyncio

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from langchain_core.language_models import BaseChatModel

from state import Settings
from state.sections import RunRequest
from tools.brokers import Broker
from tools.brokers.credentials import live_credentials
from tools.brokers.paper import PaperBroker
from tools.candle_store import CandleStore
from tools.frames import FrameCache
from tools.ledger import Ledger, memory_ledger
from state.portfolio import Position
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
    ledger: Ledger
    # Every broker the process can reach by name, so monitoring follows positions of either kind.
    brokers: Mapping[str, Broker] = field(default_factory=dict)
    llm: BaseChatModel | None = None
    verdicts: TtlCache = field(default_factory=TtlCache)
    # Strategies' track records as the store held them a moment ago: they change only when an operator
    # records a backtest, and a scan would otherwise read the same few rows once per symbol.
    track_records: TtlCache = field(default_factory=TtlCache)
    # The market a position was opened on, to follow it there (None: this run's source for all).
    position_source: Callable[[Position], MarketDataSource] | None = None
    market_source: str = ""  # this run's market, stamped on the positions it opens
    # Held from execution's last look at the book until its bracket is booked: concurrent runs of
    # this process cannot both spend the same room under a cap.
    book_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def source_for(self, position: Position) -> MarketDataSource:
        return self.position_source(position) if self.position_source else self.source


SourceKey = tuple[str, str | None, str | None, str]


def source_key(request: RunRequest) -> str:
    return "|".join(str(part or "") for part in (request.source, request.scenario, request.data_dir, request.exchange))


class ServiceHub:
    """Owns what outlives one run in a process: sources (and their sessions), indicator caches, the LLM.

    Runs of the same data source share one source and one indicator cache, so a
    scan does not open a connection or compute an indicator twice.
    """

    def __init__(
        self,
        settings: Settings,
        candles: CandleStore | None = None,
        llm: BaseChatModel | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self.settings = settings
        self._candles = candles
        self._llm = llm
        self._sources: dict[SourceKey, tuple[MarketDataSource, FrameCache]] = {}
        self._verdicts: TtlCache = TtlCache()
        self._track_records: TtlCache = TtlCache()
        self.ledger = ledger or memory_ledger()
        self.paper = PaperBroker(self.ledger, fee_rate=settings.fee_rate, slippage_bps=settings.slippage_bps)
        self._live: Broker | None = None
        self._anchored: dict[str, MarketDataSource] = {}
        self._book_lock = asyncio.Lock()

    def _source(self, request: RunRequest) -> tuple[MarketDataSource, FrameCache]:
        return self._source_by_key((request.source, request.scenario, request.data_dir, request.exchange))

    def market_source(self, request: RunRequest) -> MarketDataSource:
        """The (shared) source a request's runs read, e.g. to list its markets."""
        return self._source(request)[0]

    def position_source(self, position: Position) -> MarketDataSource:
        """The market a position was opened on; a built-in scenario continues from the position's clock."""
        kind, scenario, data_dir, exchange = (position.market_source or f"{self.settings.source}|||{self.settings.exchange}").split("|")
        if kind == "builtin" and scenario:
            key = f"{position.market_source}@{position.created_at.isoformat()}"
            if key not in self._anchored:
                from tools.market_data.builtin import BuiltinSource

                if len(self._anchored) > 256:
                    self._anchored.clear()
                self._anchored[key] = BuiltinSource(scenario, anchor=position.created_at)
            return self._anchored[key]
        return self._source_by_key((kind, scenario or None, data_dir or None, exchange))[0]

    def _source_by_key(self, key: SourceKey) -> tuple[MarketDataSource, FrameCache]:
        if key not in self._sources:
            kind, scenario, data_dir, exchange = key
            source = open_source(kind, scenario=scenario, data_dir=data_dir, exchange=exchange, api_url=self.settings.exchange_api_url)
            # Synthetic candles are a pure function of (symbol, scenario, clock): storing them buys nothing.
            if kind != "builtin" and self._candles is not None:
                source = StoredSource(source, self._candles, exchange)
            frames = FrameCache(
                source, source_key=":".join(str(part) for part in key), limit=self.settings.candle_limit, max_entries=self.settings.frame_cache_size, clock_bound=kind == "builtin" and scenario is not None
            )
            self._sources[key] = (source, frames)
        return self._sources[key]

    def live_broker(self, exchange: str) -> Broker:
        """The one live broker of this process; refuses unless live trading is switched on and keyed."""
        if self._live is None:
            key, secret = live_credentials(self.settings)
            from tools.brokers.live import CcxtBroker  # ccxt's private API only when trading live

            self._live = CcxtBroker(exchange, api_key=key.get_secret_value(), secret=secret.get_secret_value(), api_url=self.settings.exchange_api_url)
        return self._live

    def brokers(self) -> dict[str, Broker]:
        """Every broker this process can reach, by name (a halt cancels resting entries through them)."""
        named: dict[str, Broker] = {self.paper.name: self.paper}
        if self._live is not None:
            named[self._live.name] = self._live
        return named

    def for_request(self, request: RunRequest) -> Services:
        broker = self.live_broker(request.exchange) if request.broker == "live" else self.paper
        return self._services(request, broker, self.ledger, self.brokers(), self._book_lock)

    def _services(
        self, request: RunRequest, broker: Broker, ledger: Ledger, brokers: Mapping[str, Broker], book_lock: asyncio.Lock
    ) -> Services:
        source, frames = self._source(request)
        return Services(
            settings=self.settings,
            source=source,
            frames=frames,
            broker=broker,
            ledger=ledger,
            brokers=brokers,
            llm=self._llm,
            verdicts=self._verdicts,
            track_records=self._track_records,
            position_source=self.position_source,
            market_source=source_key(request),
            book_lock=book_lock,
        )

    async def scratch_for(self, request: RunRequest, *, thread_id: str) -> Services:
        """Services for a replay or fork: paper on a scratch copy of the book, so nothing reaches the real one.

        The copy holds every other thread's positions and the governor's strategy flags and budget, but not
        this thread's own orders (they are what is being re-decided) nor a halt (a replay places nothing).
        """
        scratch = memory_ledger()
        for position in await self.ledger.positions():
            if position.thread_id != thread_id:
                await scratch.insert(position)
        governor = await self.ledger.governor()
        await scratch.save_governor(governor.model_copy(update={"halted": False, "reason": ""}))
        paper = PaperBroker(scratch, fee_rate=self.settings.fee_rate, slippage_bps=self.settings.slippage_bps)
        return self._services(request, paper, scratch, {paper.name: paper}, asyncio.Lock())

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
        if self._live is not None:
            await self._live.close()
            self._live = None


def build_services(settings: Settings, request: RunRequest) -> Services:
    """Services for one run without a database (tests, Studio): built-in and file data read directly."""
    return ServiceHub(settings).for_request(request)
