"""The L1 sanity agent: deterministic rules first, then an advisory LLM verdict that can only be stricter.

No Ollama server runs here, so the LLM is langchain-core's fake chat model
(``FakeListChatModel``) answering scripted JSON strings, wrapped to count how often
it is asked. One test uses the real ``ChatOllama`` client pointed at a closed local
port, so the real client really fails. No network reaches an exchange either, so the
ccxt-backed cases run ccxt against the local endpoint serving recorded Binance
responses (tests/exchange_server.py), reached through ``Settings(exchange_api_url=...)``.

Runs go through the real compiled graph (no checkpointer) with the services a run
would get; only the pure verdict logic (``judge``) is called directly.
"""

from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from pydantic import Field

from api.runs import make_request
from graphs.trade_lifecycle import build_graph
from nodes.sanity import LLM_BACKOFF_SECONDS, judge, symbol_checks
from state import Settings
from state.sections import Check, RunRequest, SanityVerdict
from tests.exchange_server import BinanceStub
from tools.context import ServiceHub, Services, build_services
from tools.llm import make_chat_model
from tools.ttl_cache import TtlCache

CLOCK = datetime(2026, 11, 20, 13, 37, tzinfo=UTC)
EXCHANGE_NOW = datetime(2024, 6, 1, 12, 30, tzinfo=UTC)
TIMEFRAMES = ["1h", "4h"]  # enough for a full run, and quick
GRAPH = build_graph()


class CountingFake(FakeListChatModel):
    """The fake chat model, named like a real one, remembering every prompt it was given."""

    model: str = "fake-sanity"
    prompts: list[str] = Field(default_factory=list)

    @property
    def calls(self) -> int:
        return len(self.prompts)

    def _call(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> str:
        self.prompts.append(str(messages[-1].content))
        return super()._call(messages, stop, run_manager, **kwargs)


def verdict(tradable: bool, category: str, confidence: float, reason: str = "scripted answer") -> str:
    return json.dumps({"tradable": tradable, "category": category, "reason": reason, "confidence": confidence})


TRADABLE = verdict(True, "ok", 0.9, "a large ordinary spot asset")


def fake(*responses: str, name: str = "fake-sanity") -> CountingFake:
    return CountingFake(responses=list(responses), model=name)


def request_for(settings: Settings, symbol: str = "BTC/USDT", **fields: Any) -> RunRequest:
    fields = {"scenario": "range", "timeframes": TIMEFRAMES, "decision_timeframe": "1h", "as_of": CLOCK, **fields}
    return make_request(settings, symbol, **fields)


async def run(request: RunRequest, services: Services) -> dict[str, Any]:
    return await GRAPH.ainvoke({"request": request}, context=services)


async def run_with(settings: Settings, llm: Any, symbol: str = "BTC/USDT") -> dict[str, Any]:
    """One run with its own services (and so its own verdict cache)."""
    request = request_for(settings, symbol)
    return await run(request, dataclasses.replace(build_services(settings, request), llm=llm))


def llm_check_of(final: dict[str, Any]) -> Check:
    return next(check for check in final["sanity"].checks if check.name == "llm_verdict")


def sanity_event(final: dict[str, Any]):
    (event,) = [e for e in final["audit"] if e.produced_by == "sanity"]
    return event


def assert_proceeded(final: dict[str, Any]) -> None:
    """Sanity let the run through: market data was loaded and the decision came from a later stage."""
    assert final["sanity"].passed is True
    assert "market" in final
    assert final["decision"].stage != "sanity", final["decision"].reason


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


# --- the LLM's verdict through the graph ---------------------------------------------------
async def test_tradable_verdict_passes_and_the_audit_records_the_call(settings: Settings) -> None:
    model = fake(TRADABLE)
    final = await run_with(settings, model)

    assert_proceeded(final)
    check = llm_check_of(final)
    assert check.passed is True and "a large ordinary spot asset" in check.detail
    assert model.calls == 1
    # the prompt names the symbol and says there are no exchange facts for the built-in source
    assert "BTC/USDT" in model.prompts[0] and "none (offline data source)" in model.prompts[0]
    event = sanity_event(final)
    assert event.verdict == "PASS"
    call = event.detail["llm_call"]
    assert call["model"] == "fake-sanity"
    assert call["prompt_version"] == "sanity@1"
    assert call["outcome"] == "ok"
    assert isinstance(call["latency_ms"], float) and call["latency_ms"] >= 0


async def test_confident_veto_rejects_before_any_market_data(settings: Settings) -> None:
    model = fake(verdict(False, "suspicious", 0.9, "name looks like a test token"))
    final = await run_with(settings, model)

    decision = final["decision"]
    assert decision.action == "REJECT" and decision.stage == "sanity"
    assert "veto" in decision.reason and "suspicious" in decision.reason and "name looks like a test token" in decision.reason
    assert "market" not in final
    assert final["sanity"].passed is False
    assert llm_check_of(final).passed is False
    assert sanity_event(final).detail["llm_call"]["outcome"] == "ok"
    assert model.calls == 1


@pytest.mark.parametrize("claim", ["leveraged_token", "derivative"])
async def test_a_claim_the_rules_contradict_is_overruled(settings: Settings, claim: str) -> None:
    model = fake(verdict(False, claim, 0.95, "BTC/USDT is a leveraged token"))
    final = await run_with(settings, model)

    assert_proceeded(final)
    check = llm_check_of(final)
    assert check.passed is None
    assert check.detail.startswith("overruled") and claim in check.detail
    assert model.calls == 1


async def test_a_low_confidence_objection_is_advice_only(settings: Settings) -> None:
    final = await run_with(settings, fake(verdict(False, "suspicious", 0.5)))

    assert_proceeded(final)
    check = llm_check_of(final)
    assert check.passed is None and check.detail.startswith("advisory")


@pytest.mark.parametrize(
    "answer",
    [
        "Sure! BTC/USDT looks perfectly fine to trade.",  # not JSON at all
        json.dumps({"tradable": False, "category": "suspicious"}),  # JSON missing fields
        verdict(False, "suspicious", 7),  # confidence out of bounds
    ],
    ids=["not-json", "missing-fields", "confidence-7"],
)
async def test_invalid_output_leaves_the_rules_to_decide_and_backs_off(settings: Settings, answer: str) -> None:
    model = fake(answer)
    hub = ServiceHub(settings, llm=model)
    request = request_for(settings)
    try:
        first = await run(request, hub.for_request(request))
        second = await run(request, hub.for_request(request))
    finally:
        await hub.aclose()

    for final in (first, second):
        assert_proceeded(final)
        check = llm_check_of(final)
        assert check.passed is None
        assert check.detail.startswith("LLM unavailable (answer outside the schema") and "rules decided" in check.detail
    assert sanity_event(first).detail["llm_call"]["outcome"] == "invalid_output"
    # the failure is remembered: the second run, within the backoff, does not ask the model again
    assert model.calls == 1
    assert sanity_event(second).detail["llm_call"] == {"model": model.model, "cached": True}


async def test_a_failure_is_retried_after_the_backoff_but_a_verdict_is_kept_longer(settings: Settings) -> None:
    now = [0.0]
    verdicts = TtlCache(clock=lambda: now[0])
    broken, sound = fake("not json"), fake(TRADABLE, name="other-model")
    request = request_for(settings)
    base = build_services(settings, request)

    async def ask(model: CountingFake) -> Check:
        return llm_check_of(await run(request, dataclasses.replace(base, llm=model, verdicts=verdicts)))

    assert (await ask(broken)).detail.startswith("LLM unavailable")
    assert (await ask(sound)).passed is True
    now[0] += LLM_BACKOFF_SECONDS - 1
    await ask(broken)
    await ask(sound)
    assert (broken.calls, sound.calls) == (1, 1)
    now[0] += 2  # past the failure's backoff, well within settings.sanity_cache_seconds
    await ask(broken)
    assert (await ask(sound)).passed is True
    assert (broken.calls, sound.calls) == (2, 1)


async def test_verdicts_are_cached_per_symbol_and_model(settings: Settings) -> None:
    model = fake(TRADABLE)
    hub = ServiceHub(settings, llm=model)
    try:

        async def run_symbol(symbol: str, llm: Any = None) -> dict[str, Any]:
            request = request_for(settings, symbol)
            services = hub.for_request(request)
            return await run(request, dataclasses.replace(services, llm=llm) if llm else services)

        first = await run_symbol("BTC/USDT")
        again = await run_symbol("BTC/USDT")
        assert model.calls == 1
        assert llm_check_of(again) == llm_check_of(first) and llm_check_of(again).passed is True
        cached_call = sanity_event(again).detail["llm_call"]
        assert cached_call["cached"] is True and cached_call["prompt_version"] == "sanity@1"
        assert cached_call["model"] == sanity_event(first).detail["llm_call"]["model"]

        await run_symbol("ETH/USDT")
        assert model.calls == 2
        assert "ETH/USDT" in model.prompts[1]

        # the same symbol asked of another model is a new question (hub's verdict cache is shared)
        other = fake(verdict(False, "suspicious", 0.9, "other model objects"), name="fake-other")
        vetoed = await run_symbol("BTC/USDT", llm=other)
        assert other.calls == 1 and model.calls == 2
        assert vetoed["decision"].action == "REJECT" and "other model objects" in vetoed["decision"].reason
    finally:
        await hub.aclose()


async def test_the_model_is_not_asked_when_the_rules_already_reject(settings: Settings) -> None:
    model = fake(TRADABLE)
    final = await run_with(settings, model, symbol="ETHBULL/USDT")

    decision = final["decision"]
    assert decision.action == "REJECT" and decision.stage == "sanity"
    assert "not_leveraged_token" in decision.reason
    assert model.calls == 0
    assert llm_check_of(final).detail == "not asked: the rules already rejected"
    assert "market" not in final


# --- the real Ollama client, failing for real ----------------------------------------------
def closed_port() -> int:
    """A local port nothing listens on: bound for a moment, then released."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_unreachable_ollama_leaves_the_rules_to_decide(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(llm_base_url=f"http://127.0.0.1:{closed_port()}", llm_timeout_seconds=3.0, llm_model="phi3:mini")
    model = make_chat_model(settings)
    assert type(model).__name__ == "ChatOllama"
    final = await run_with(settings, model)

    assert final["decision"] is not None
    assert_proceeded(final)
    check = llm_check_of(final)
    assert check.passed is None and check.detail.startswith("LLM unavailable (ConnectError") and "rules decided" in check.detail
    event = sanity_event(final)
    assert event.detail["llm"] == check.detail
    call = event.detail["llm_call"]
    assert call["outcome"] == "unreachable" and call["model"] == "phi3:mini" and call["prompt_version"] == "sanity@1"
    assert call["latency_ms"] < 3000  # refused at once, not a timeout


class UnreachableFake(CountingFake):
    """Counts its calls like the fake above, then fails the way a client does when the server is down."""

    def _call(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> str:
        self.prompts.append(str(messages[-1].content))
        raise ConnectionError("connection refused")


async def test_an_unreachable_model_is_left_alone_for_the_next_symbol(settings: Settings) -> None:
    model = UnreachableFake(responses=[TRADABLE])
    hub = ServiceHub(settings, llm=model)
    try:
        for symbol in ("BTC/USDT", "ETH/USDT"):
            request = request_for(settings, symbol)
            final = await run(request, hub.for_request(request))
            assert_proceeded(final)
            assert llm_check_of(final).detail.startswith("LLM unavailable (ConnectionError")
    finally:
        await hub.aclose()
    assert model.calls == 1


# --- exchange metadata through ccxt against the recorded Binance endpoint -------------------
@pytest.fixture
async def binance(make_settings: Callable[..., Settings]) -> AsyncIterator[tuple[BinanceStub, ServiceHub, Settings]]:
    async with BinanceStub(EXCHANGE_NOW) as stub:
        # BTC/USDC's recorded 24h quote volume is ~86.7 M, BTC/USDT's ~1.25 G
        settings = make_settings(exchange_api_url=stub.url, llm_enabled=False, min_quote_volume=100_000_000.0)
        hub = ServiceHub(settings, llm=make_chat_model(settings))
        try:
            yield stub, hub, settings
        finally:
            await hub.aclose()


async def run_ccxt(hub: ServiceHub, settings: Settings, symbol: str) -> dict[str, Any]:
    request = request_for(settings, symbol, source="ccxt", exchange="binance", scenario=None, as_of=EXCHANGE_NOW)
    return await run(request, hub.for_request(request))


def check_named(final: dict[str, Any], name: str) -> Check:
    return next(check for check in final["sanity"].checks if check.name == name)


async def test_an_inactive_market_is_rejected(binance) -> None:
    stub, hub, settings = binance
    final = await run_ccxt(hub, settings, "LUNA/USDT")  # status BREAK in the recorded exchangeInfo

    decision = final["decision"]
    assert decision.action == "REJECT" and decision.stage == "sanity"
    assert "market_active: inactive on the exchange" in decision.reason
    assert check_named(final, "market_active").passed is False
    assert "market" not in final and stub.requests_to("klines") == []


async def test_a_thin_market_is_rejected(binance) -> None:
    stub, hub, settings = binance
    final = await run_ccxt(hub, settings, "BTC/USDC")

    decision = final["decision"]
    assert decision.action == "REJECT" and decision.stage == "sanity"
    assert "min_quote_volume" in decision.reason and "86,747,562 vs 100,000,000" in decision.reason
    assert check_named(final, "market_active").passed is True
    assert check_named(final, "min_quote_volume").passed is False
    assert stub.requests_to("ticker/24hr")[-1]["symbol"] == "BTCUSDC"
    assert "market" not in final and stub.requests_to("klines") == []


async def test_an_unknown_symbol_is_rejected_with_close_matches(binance) -> None:
    stub, hub, settings = binance
    final = await run_ccxt(hub, settings, "BTC/USDX")

    decision = final["decision"]
    assert decision.action == "REJECT" and decision.stage == "sanity"
    assert "BTC/USDX is not a market on binance" in decision.reason
    assert "close matches:" in decision.reason and "BTC/USDT" in decision.reason and "BTC/USDC" in decision.reason
    assert "market" not in final and stub.requests_to("klines") == []


async def test_a_healthy_market_passes_with_its_metadata_checked(binance) -> None:
    stub, hub, settings = binance
    final = await run_ccxt(hub, settings, "BTC/USDT")

    assert final["sanity"].passed is True
    for name in ("market_active", "market_type", "min_quote_volume"):
        assert check_named(final, name).passed is True, check_named(final, name)
    assert "1,254,991,320 vs 100,000,000" in check_named(final, "min_quote_volume").detail
    assert llm_check_of(final).detail == "LLM disabled: rules decided"
    assert final["decision"].stage != "sanity", final["decision"].reason
    assert stub.requests_to("klines")  # the run went on to load candles from the exchange


# --- the verdict logic on its own ----------------------------------------------------------
@pytest.mark.parametrize(
    ("tradable", "category", "confidence", "passed", "starts"),
    [
        (False, "suspicious", 0.8, False, "veto"),  # the veto threshold is inclusive
        (False, "suspicious", 0.79, None, "advisory"),
        (False, "stablecoin_pair", 0.95, False, "veto"),  # a claim the rules do not check stands
        (False, "leveraged_token", 0.95, None, "overruled"),
        (True, "ok", 0.1, True, "ok"),
    ],
)
def test_judge(tradable: bool, category: str, confidence: float, passed: bool | None, starts: str) -> None:
    answer = SanityVerdict.model_validate_json(verdict(tradable, category, confidence))
    check = judge(answer, symbol_checks("BTC/USDT"))
    assert check.name == "llm_verdict" and check.passed is passed and check.detail.startswith(starts)


def test_a_rule_checked_claim_stands_when_the_rules_agree() -> None:
    answer = SanityVerdict.model_validate_json(verdict(False, "leveraged_token", 0.9))
    assert judge(answer, symbol_checks("BTCUP/USDT")).passed is False


def test_a_self_contradicting_answer_cannot_veto() -> None:
    rules = symbol_checks("BTC/USDT")
    check = judge(SanityVerdict(tradable=False, category="ok", reason="fine", confidence=0.99), rules)
    assert check.passed is None and "contradicts itself" in check.detail


# --- the verifier's rationale audit: the same guarded LLM path --------------------------------
def rationale(consistent: bool, confidence: float, concern: str = "price sits below the EMA for a LONG") -> str:
    return json.dumps({"consistent": consistent, "concerns": [] if consistent else [concern], "confidence": confidence})


async def verification_of(settings: Settings, model: Any) -> tuple[dict[str, Any], Any]:
    request = make_request(settings, "BTC/USDT", scenario="uptrend", as_of=datetime(2026, 11, 20, 13, 37, tzinfo=UTC))
    services = dataclasses.replace(build_services(settings, request), llm=model)
    final = await build_graph().ainvoke({"request": request}, context=services)
    check = next(c for c in final["verification"].checks if c.name == "rationale_audit")
    return final, check


async def test_rationale_audit_veto_holds_and_records_the_call(settings: Settings) -> None:
    # The first answer goes to the sanity agent, the second to the rationale audit.
    final, check = await verification_of(settings, fake(TRADABLE, rationale(False, 0.9)))
    assert final["decision"].action == "HOLD" and final["decision"].stage == "verify"
    assert check.passed is False and "veto" in check.detail and "below the EMA" in check.detail
    verify_event = next(e for e in final["audit"] if e.produced_by == "verify")
    assert verify_event.detail["llm_call"]["prompt_version"] == "rationale_audit@1"


async def test_rationale_audit_can_only_object(settings: Settings) -> None:
    final, check = await verification_of(settings, fake(TRADABLE, rationale(True, 0.99)))
    assert check.passed is True and final["decision"].action == "BUY"
    final, check = await verification_of(settings, fake(TRADABLE, rationale(False, 0.5)))
    assert check.passed is None and check.detail.startswith("advisory") and final["decision"].action == "BUY"


async def test_rationale_audit_falls_back_to_rules_when_the_model_fails(settings: Settings) -> None:
    final, check = await verification_of(settings, fake(TRADABLE, "no json here"))
    assert check.detail.startswith("rules (LLM unavailable") and check.passed is True
    assert final["decision"].action == "BUY"
    final, check = await verification_of(settings, None)
    assert check.detail.startswith("rules (LLM disabled)")
