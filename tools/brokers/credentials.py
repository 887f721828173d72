"""Exchange keys for the live broker: from the environment or a secrets file, never from state.

Keys stay `SecretStr` until the moment the exchange client is built, so a
settings dump, a log line or an error message shows ``**********``.
"""

from __future__ import annotations

import json

from pydantic import SecretStr

from state import Settings


class LiveTradingRefused(ValueError):
    """A live run was asked for without the explicit flag or without keys."""


def live_credentials(settings: Settings) -> tuple[SecretStr, SecretStr]:
    if not settings.live_trading:
        raise LiveTradingRefused("live trading is off: set AITRADER_LIVE_TRADING=true to allow the live broker")
    key, secret = settings.exchange_api_key, settings.exchange_secret
    if (key is None or secret is None) and settings.secrets_file is not None:
        try:
            document = json.loads(settings.secrets_file.expanduser().read_text())
        except (OSError, ValueError) as error:
            # The path and the error kind only: the file's contents must never reach a message.
            raise LiveTradingRefused(f"cannot read the secrets file {settings.secrets_file}: {type(error).__name__}") from None
        key = key or (SecretStr(document["apiKey"]) if isinstance(document.get("apiKey"), str) else None)
        secret = secret or (SecretStr(document["secret"]) if isinstance(document.get("secret"), str) else None)
    if key is None or secret is None:
        raise LiveTradingRefused(
            "live trading needs exchange keys: AITRADER_EXCHANGE_API_KEY and AITRADER_EXCHANGE_SECRET, "
            "or AITRADER_SECRETS_FILE pointing at a JSON file with apiKey and secret"
        )
    return key, secret
