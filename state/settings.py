"""Settings read from the environment and `.env`, every name prefixed ``AITRADER_``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ApprovalMode = Literal["observe", "threshold", "always"]
DataSource = Literal["builtin", "files", "ccxt"]
DEFAULT_TIMEFRAMES = ["5m", "15m", "1h", "4h", "1d", "1w"]
# Kept here rather than imported from tools: state may import pydantic only.
KNOWN_TIMEFRAMES = ("1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w")
MAX_RISK_PER_TRADE = 0.02
# Sector / narrative tags per base asset; exposure is limited per tag. Unknown assets get "other".
DEFAULT_SECTOR_TAGS: dict[str, list[str]] = {
    "BTC": ["store-of-value"],
    "ETH": ["smart-contract"],
    "SOL": ["smart-contract"],
    "ADA": ["smart-contract"],
    "AVAX": ["smart-contract"],
    "DOT": ["smart-contract"],
    "BNB": ["exchange"],
    "XRP": ["payments"],
    "LTC": ["payments", "store-of-value"],
    "DOGE": ["meme"],
    "SHIB": ["meme"],
    "PEPE": ["meme"],
    "LINK": ["oracle"],
    "UNI": ["defi"],
    "AAVE": ["defi"],
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AITRADER_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; unset = embedded SQLite file in `home`."
    )
    home: Path = Field(default=Path("~/.aitrader"), description="Local data directory.")
    exchange: str = "binance"
    source: DataSource = Field(default="builtin", description="Where candles come from when a run does not say.")
    data_dir: Path | None = Field(default=None, description="freqtrade / Binance files for the `files` source.")
    exchange_api_url: str | None = Field(default=None, description="Base URL replacing the exchange's API (proxy, mirror).")
    timeframes: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_TIMEFRAMES))
    decision_timeframe: str = Field(default="1h", description="Timeframe the strategies trade on.")
    approval_mode: ApprovalMode = "observe"
    approval_threshold_notional: float = Field(default=5_000.0, gt=0)
    account_equity: float = Field(default=10_000.0, gt=0)
    risk_per_trade: float = Field(default=0.01, gt=0, le=MAX_RISK_PER_TRADE)
    allow_short: bool = Field(default=False, description="Spot accounts cannot sell what they do not hold.")
    min_notional: float = Field(default=10.0, ge=0)
    fee_rate: float = Field(default=0.001, ge=0, lt=0.05)
    slippage_bps: float = Field(default=5.0, ge=0, lt=500)
    candle_limit: int = Field(default=300, ge=60, le=5000)
    frame_cache_size: int = Field(
        default=4096,
        ge=16,
        description="Indicator frames a process keeps (6 per symbol, ~70 KB each): a scan's next cycle reuses the larger "
        "timeframes' frames and the answers derived from them, if its worker's share of the watchlist fits (~680 symbols).",
    )
    llm_model: str = "phi3:mini"
    llm_base_url: str = "http://127.0.0.1:11434"
    llm_enabled: bool = True
    llm_timeout_seconds: float = Field(default=20.0, gt=0)
    sanity_cache_seconds: float = Field(default=3600.0, ge=0, description="How long a symbol's LLM sanity verdict is reused.")
    min_quote_volume: float = Field(default=1_000_000.0, ge=0, description="Minimum 24h quote volume for a tradable market.")
    alt_data_providers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    api_token: SecretStr | None = None

    # Portfolio risk (fractions of equity; notional exposure, open risk at the stops).
    max_portfolio_heat: float = Field(default=0.10, gt=0, le=0.10, description="Total open risk at the stops.")
    max_symbol_exposure: float = Field(default=0.5, gt=0)
    max_tag_exposure: float = Field(default=0.75, gt=0)
    max_direction_exposure: float = Field(default=1.0, gt=0)
    sector_tags: dict[str, list[str]] = Field(default_factory=lambda: dict(DEFAULT_SECTOR_TAGS))
    correlation_window: int = Field(default=120, ge=20, description="Decision-timeframe returns compared.")
    correlation_scale_above: float = Field(default=0.5, ge=0, le=1)
    correlation_reject_above: float = Field(default=0.9, ge=0, le=1)
    volatility_target_atr_pct: float = Field(default=2.0, gt=0, description="ATR % at which full size is risked.")
    volatility_extreme_atr_pct: float = Field(default=8.0, gt=0, description="ATR % above which new orders halt.")
    drawdown_daily_limit: float = Field(default=0.03, gt=0, lt=1)
    drawdown_weekly_limit: float = Field(default=0.06, gt=0, lt=1)
    drawdown_monthly_limit: float = Field(default=0.10, gt=0, lt=1)

    # Approval expiry: an operator who was asleep never approves a stale trade.
    approval_ttl_seconds: float = Field(default=900.0, ge=0)
    approval_max_drift: float = Field(default=0.01, ge=0, description="Largest move from the proposed entry, as a fraction.")

    # Execution.
    entry_order_type: Literal["market", "limit"] = "market"
    live_trading: bool = Field(default=False, description="Must be true before any run may use the live broker.")
    exchange_api_key: SecretStr | None = None
    exchange_secret: SecretStr | None = None
    secrets_file: Path | None = Field(default=None, description="JSON file with apiKey and secret, instead of the variables.")

    # HTTP API (`aitrader serve`). Without a token the server only listens on loopback.
    api_host: str = Field(default="127.0.0.1", description="Address `aitrader serve` binds to.")
    api_port: int = Field(default=8000, ge=1, le=65535)
    sse_heartbeat_seconds: float = Field(default=15.0, gt=0, description="Idle time before an SSE stream sends a keep-alive comment.")
    api_max_concurrent_runs: int = Field(default=4, ge=1, le=256, description="Runs the server drives at once; more wait queued.")
    api_shutdown_grace_seconds: float = Field(default=10.0, ge=0, description="How long a stopping server lets runs reach a pause; the rest are cancelled and marked failed.")
    approval_sweep_seconds: float = Field(default=30.0, gt=0, description="How often the server expires stale approvals.")

    # Notifications of pending approvals, breaker trips, governor halts and fills; a failing one never blocks a run.
    notify_webhook_url: str | None = None
    notify_telegram_bot_token: SecretStr | None = None
    notify_telegram_chat_id: str | None = None
    notify_telegram_api_url: str = "https://api.telegram.org"
    notify_attempts: int = Field(default=4, ge=1, le=10)
    notify_timeout_seconds: float = Field(default=5.0, gt=0)

    @field_validator("alt_data_providers", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("timeframes", mode="before")
    @classmethod
    def _split_timeframes(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.replace(" ", ",").split(",") if part.strip()]
        return value

    @field_validator("timeframes")
    @classmethod
    def _known_timeframes(cls, value: list[str]) -> list[str]:
        unknown = [tf for tf in value if tf not in KNOWN_TIMEFRAMES]
        if unknown:
            raise ValueError(f"unknown timeframes {unknown}; known: {', '.join(KNOWN_TIMEFRAMES)}")
        if not value:
            raise ValueError("at least one timeframe is needed")
        return sorted(set(value), key=KNOWN_TIMEFRAMES.index)

    @field_validator("home")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def sqlite_path(self) -> Path:
        return self.home / "aitrader.sqlite"

    def tags_for(self, symbol: str) -> list[str]:
        """Sector / narrative tags of a symbol's base asset."""
        base = symbol.split("/", 1)[0].upper()
        return list(self.sector_tags.get(base, ["other"]))

    def with_overrides(self, overrides: dict[str, object]) -> Settings:
        """A copy with some values changed, validated like any settings (a what-if cannot set an impossible limit)."""
        return type(self).model_validate({**self.model_dump(), **overrides})

    @property
    def drawdown_limits(self) -> dict[str, float]:
        return {"daily": self.drawdown_daily_limit, "weekly": self.drawdown_weekly_limit, "monthly": self.drawdown_monthly_limit}
