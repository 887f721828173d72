"""`aitrader data download|import`: fill the candle store from an exchange or from files."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from state import Settings
from tools.market_data.files import FileSource
from tools.market_data.stored import missing_ranges
from tools.quality import normalize
from tools.storage import Storage
from tools.timeframes import as_utc, floor_time, period

EPOCH = datetime(2009, 1, 3, tzinfo=UTC)  # nothing crypto is older than the genesis block


def add_parser(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="download or import candles into the candle store")
    actions = data.add_subparsers(dest="data_command", required=True)
    download = actions.add_parser("download", help="fetch candles from an exchange (only what the store lacks)")
    download.add_argument("--exchange", help="ccxt exchange id (default from settings)")
    download.add_argument("--symbols", required=True, help="comma-separated, e.g. BTC/USDT,ETH/USDT")
    download.add_argument("--timeframes", default="1h", help="comma-separated, e.g. 1h,4h")
    download.add_argument("--since", required=True, type=datetime.fromisoformat, help="first day, e.g. 2024-01-01")
    download.add_argument("--until", type=datetime.fromisoformat, help="default: now")
    imported = actions.add_parser("import", help="import freqtrade / Binance files into the candle store")
    imported.add_argument("path", help="data directory (searched recursively)")
    imported.add_argument("--exchange", help="exchange the files came from (default from settings)")


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


async def download(args: argparse.Namespace, settings: Settings, storage: Storage) -> list[tuple[str, str, int]]:
    from tools.market_data.ccxt_source import CcxtSource  # ccxt takes a second to import: only when used

    exchange = args.exchange or settings.exchange
    since, until = as_utc(args.since), as_utc(args.until or datetime.now(UTC))
    pairs = [(s.upper(), tf) for s in _split(args.symbols) for tf in _split(args.timeframes)]
    for _, timeframe in pairs:
        period(timeframe)  # an unknown timeframe is a usage error before any request
    expected = sum(max(0, (until - since) // period(tf)) for _, tf in pairs)
    added: list[tuple[str, str, int]] = []
    async with CcxtSource(exchange, api_url=settings.exchange_api_url) as source:
        with tqdm(total=expected, unit="candle", desc=f"{exchange}", file=sys.stderr, dynamic_ncols=True) as bar:
            for symbol, timeframe in pairs:
                bar.set_postfix_str(f"{symbol} {timeframe}")
                bounds = await storage.candles.bounds(exchange, symbol, timeframe)
                ranges = missing_ranges(bounds, floor_time(since, timeframe), until, timeframe)
                stored = 0
                for start, end in ranges:
                    candles = await source.fetch_since(symbol, timeframe, since=start, until=end, on_page=bar.update)
                    cleaned, _ = normalize(candles)
                    stored += await storage.candles.insert(exchange, symbol, timeframe, cleaned)
                added.append((symbol, timeframe, stored))
    return added


async def import_files(args: argparse.Namespace, settings: Settings, storage: Storage) -> list[tuple[str, str, int]]:
    exchange = args.exchange or settings.exchange
    source = FileSource(Path(args.path))
    pairs = [(symbol, tf) for symbol, timeframes in source.available().items() for tf in timeframes]
    added: list[tuple[str, str, int]] = []
    now = datetime.now(UTC)
    for symbol, timeframe in tqdm(pairs, unit="file", desc="import", file=sys.stderr, dynamic_ncols=True):
        candles = await source.fetch_since(symbol, timeframe, since=EPOCH, until=now)
        cleaned, _ = normalize(candles)
        added.append((symbol, timeframe, await storage.candles.insert(exchange, symbol, timeframe, cleaned)))
    return added


def render(added: list[tuple[str, str, int]]) -> str:
    lines = [f"{'symbol':<14} {'timeframe':<9} {'new candles':>11}"]
    lines += [f"{symbol:<14} {timeframe:<9} {count:>11,}" for symbol, timeframe, count in added]
    return "\n".join(lines)
