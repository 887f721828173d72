"""L1 sanity agent: is this a symbol we may trade at all? Rules first; fails closed."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from langgraph.runtime import Runtime
from pydantic import ValidationError

from nodes.common import end_run, event
from state import AnalysisState
from state.sections import Check, RunRequest, SanitySection, failed_checks
from tools.context import Services

NODE = "sanity"
ALLOWED_QUOTES = {"USDT", "USDC", "USD", "FDUSD", "DAI", "EUR", "BTC", "ETH"}
# Leveraged tokens and similar wrappers decay by construction: never an analysis target.
# The prefix must itself look like an asset so that e.g. JUP is not read as J + UP.
LEVERAGED_NAME = re.compile(r"^([A-Z0-9]{3,}(UP|DOWN|BULL|BEAR|HEDGE)|[A-Z0-9]{2,}[1-9][LS])$")


def symbol_checks(symbol: str) -> list[Check]:
    base, quote = symbol.split(":")[0].split("/")
    leveraged = bool(LEVERAGED_NAME.match(base))
    return [
        Check(name="quote_allowed", passed=quote in ALLOWED_QUOTES, detail=f"quote {quote}"),
        Check(name="not_leveraged_token", passed=not leveraged, detail=f"base {base}"),
        Check(name="spot_market", passed=":" not in symbol, detail="derivative suffix" if ":" in symbol else "spot"),
    ]


async def sanity(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    raw = state.get("request")
    try:
        request = RunRequest.model_validate(raw)
    except ValidationError as error:
        now = datetime.now(UTC)
        reason = "invalid request: " + "; ".join(e["msg"] for e in error.errors())
        return end_run(NODE, "REJECT", reason, now, kind="SYS_COMMAND")
    clock = request.as_of or datetime.now(UTC)
    checks = symbol_checks(request.symbol)
    # Offline sources carry no exchange metadata: those rules do not apply rather than pass.
    checks += [
        Check(name="market_active", passed=None, detail=f"{request.source} source has no exchange metadata"),
        Check(name="min_quote_volume", passed=None, detail=f"{request.source} source has no exchange metadata"),
    ]
    failed = failed_checks(checks)
    section = SanitySection(as_of=clock, produced_by=NODE, passed=not failed, checks=checks)
    if failed:
        reason = "; ".join(f"{c.name}: {c.detail}" for c in failed)
        return end_run(NODE, "REJECT", f"symbol fails sanity rules ({reason})", clock, sanity=section)
    return {
        "sanity": section,
        "audit": [event(NODE, "ANALYSIS_UPDATE", "PASS", clock, {"checks": len(checks)})],
    }
