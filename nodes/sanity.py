"""L1 sanity agent: is this a market we may analyse at all? Rules first, then an advisory LLM verdict.

The rules decide; the LLM can only add a veto, and a claim of its that the
rules can check (leveraged token, derivative) is checked against them, since
small models answer confidently and wrongly.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime
from pydantic import ValidationError

from nodes.common import end_run, event, services
from prompts import load_prompt
from state import AnalysisState
from state.sections import Check, RunRequest, SanitySection, SanityVerdict, failed_checks
from tools.context import Services
from tools.llm import LLM_BACKOFF_SECONDS, advise, model_name  # noqa: F401  (backoff re-exported for tests)
from tools.market_data import MarketDataError, MarketInfo, UnknownSymbol

NODE = "sanity"
ALLOWED_QUOTES = {"USDT", "USDC", "USD", "FDUSD", "DAI", "EUR", "BTC", "ETH"}
ALLOWED_TYPES = {"spot"}
# The prefix must itself look like an asset so that e.g. JUP is not read as J + UP.
LEVERAGED_NAME = re.compile(r"^([A-Z0-9]{3,}(UP|DOWN|BULL|BEAR|HEDGE)|[A-Z0-9]{2,}[1-9][LS])$")
VETO_CONFIDENCE = 0.8
RULE_CHECKED_CLAIMS = {"leveraged_token", "derivative"}


def symbol_checks(symbol: str) -> list[Check]:
    base, quote = symbol.split(":")[0].split("/")
    leveraged = bool(LEVERAGED_NAME.match(base))
    return [
        Check(name="quote_allowed", passed=quote in ALLOWED_QUOTES, detail=f"quote {quote}"),
        Check(name="not_leveraged_token", passed=not leveraged, detail=f"base {base}"),
        Check(name="spot_market", passed=":" not in symbol, detail="derivative suffix" if ":" in symbol else "spot"),
    ]


def metadata_checks(info: MarketInfo | None, source: str, min_quote_volume: float) -> list[Check]:
    if info is None:  # offline sources carry no exchange metadata: not applicable, not passed
        why = f"{source} source has no exchange metadata"
        return [Check(name=name, passed=None, detail=why) for name in ("market_active", "market_type", "min_quote_volume")]
    volume = info.quote_volume_24h
    return [
        Check(name="market_active", passed=info.active, detail="active" if info.active else "inactive on the exchange"),
        Check(name="market_type", passed=info.type in ALLOWED_TYPES, detail=info.type),
        Check(
            name="min_quote_volume",
            passed=volume is not None and volume >= min_quote_volume,
            detail=f"24h quote volume {volume:,.0f} vs {min_quote_volume:,.0f}" if volume is not None else "24h volume unknown",
        ),
    ]


def judge(verdict: SanityVerdict, rules: list[Check]) -> Check:
    """The LLM's verdict as one check: a veto, an overruled claim, or advice."""
    said = f"{verdict.category} ({verdict.confidence:.2f}): {verdict.reason}"
    if verdict.tradable:
        return Check(name="llm_verdict", passed=True, detail=said)
    if verdict.category == "ok":  # "not tradable, nothing wrong" contradicts itself: no veto on that
        return Check(name="llm_verdict", passed=None, detail=f"ignored, the answer contradicts itself: {said}")
    if verdict.category in RULE_CHECKED_CLAIMS and not failed_checks(rules):
        return Check(name="llm_verdict", passed=None, detail=f"overruled, the rules contradict it: {said}")
    if verdict.confidence >= VETO_CONFIDENCE:
        return Check(name="llm_verdict", passed=False, detail=f"veto: {said}")
    return Check(name="llm_verdict", passed=None, detail=f"advisory, low confidence: {said}")


async def llm_check(request: RunRequest, info: MarketInfo | None, rules: list[Check], context: Services) -> tuple[Check, dict[str, Any]]:
    model = context.llm
    if model is None:
        return Check(name="llm_verdict", passed=None, detail="LLM disabled: rules decided"), {}
    prompt = load_prompt("sanity")
    base, quote = request.symbol.split(":")[0].split("/")
    facts = info.model_dump_json() if info else "none (offline data source)"
    messages = [SystemMessage(prompt.system), HumanMessage(prompt.render_user(symbol=request.symbol, base=base, quote=quote, facts=facts))]
    settings = context.settings
    # The verdict depends on the facts given, so the source and exchange are part of the key.
    key = ("sanity", request.symbol, model_name(model), request.source, request.exchange)
    verdict, call, failure = await advise(
        model, context.verdicts, key, messages, SanityVerdict,
        timeout=settings.llm_timeout_seconds, prompt_version=prompt.version, ttl=settings.sanity_cache_seconds,
    )
    if verdict is None:
        return Check(name="llm_verdict", passed=None, detail=f"LLM unavailable ({failure}): rules decided"), call
    return judge(verdict, rules), call


async def sanity(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    try:
        request = RunRequest.model_validate(state.get("request"))
    except ValidationError as error:
        reason = "invalid request: " + "; ".join(e["msg"] for e in error.errors())
        return end_run(NODE, "REJECT", reason, datetime.now(UTC), kind="SYS_COMMAND")
    clock = request.as_of or datetime.now(UTC)
    context = services(runtime, request)
    try:
        info = await context.source.market_info(request.symbol)
    except UnknownSymbol as error:
        return end_run(NODE, "REJECT", str(error), clock)
    except MarketDataError as error:
        return end_run(NODE, "HOLD", f"exchange metadata unavailable, cannot vet the market: {error}", clock)
    rules = symbol_checks(request.symbol) + metadata_checks(info, request.source, context.settings.min_quote_volume)
    llm = Check(name="llm_verdict", passed=None, detail="not asked: the rules already rejected")
    call: dict[str, Any] = {}
    if not failed_checks(rules):
        llm, call = await llm_check(request, info, rules, context)
    checks = rules + [llm]
    failed = failed_checks(checks)
    section = SanitySection(as_of=clock, produced_by=NODE, passed=not failed, checks=checks)
    detail = {"checks": len(checks), "llm": llm.detail, "llm_call": call}
    if failed:
        reason = "; ".join(f"{c.name}: {c.detail}" for c in failed)
        return end_run(NODE, "REJECT", f"market fails sanity ({reason})", clock, detail=detail, sanity=section)
    update: dict[str, Any] = {"sanity": section, "audit": [event(NODE, "ANALYSIS_UPDATE", "PASS", clock, detail)]}
    if not isinstance(state.get("request"), RunRequest):
        # Studio and the langgraph API hand the request over as plain JSON: the nodes after this one get the model.
        update["request"] = request
    return update
