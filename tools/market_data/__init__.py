from tools.market_data.base import OHLCV_COLUMNS, MarketDataError, MarketDataSource, MarketInfo, UnknownSymbol

__all__ = ["OHLCV_COLUMNS", "MarketDataError", "MarketDataSource", "MarketInfo", "UnknownSymbol", "open_source"]


def open_source(
    source: str, *, scenario: str | None = None, data_dir: str | None = None, exchange: str = "binance", api_url: str | None = None
) -> MarketDataSource:
    """The raw market-data source a run asked for (not yet backed by the candle store)."""
    if source == "builtin":
        from tools.market_data.builtin import BuiltinSource

        return BuiltinSource(scenario=scenario)
    if source == "files":
        from tools.market_data.files import FileSource

        return FileSource(data_dir or ".")
    if source == "ccxt":
        from tools.market_data.ccxt_source import CcxtSource

        return CcxtSource(exchange, api_url=api_url)
    raise ValueError(f"unknown market-data source {source!r}; available: builtin, files, ccxt")
