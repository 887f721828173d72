from tools.market_data.base import OHLCV_COLUMNS, MarketDataError, MarketDataSource

__all__ = ["OHLCV_COLUMNS", "MarketDataError", "MarketDataSource", "open_source"]


def open_source(source: str, *, scenario: str | None = None) -> MarketDataSource:
    """The market-data source a run asked for."""
    if source == "builtin":
        from tools.market_data.builtin import BuiltinSource

        return BuiltinSource(scenario=scenario)
    raise ValueError(f"unknown market-data source {source!r}; available: builtin")
