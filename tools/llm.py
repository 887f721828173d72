"""The LLM factory and one guarded way to ask a model for a structured answer.

Small local models return well-formed JSON with wrong answers, so callers get
a validated pydantic object plus the call's figures, and must treat it as
advice that can only make a decision stricter.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from pydantic import BaseModel, ValidationError

from state import Settings
from tools.ttl_cache import TtlCache

SchemaT = TypeVar("SchemaT", bound=BaseModel)
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


class LlmFailure(RuntimeError):
    """No usable answer: the model was unreachable, too slow, or answered outside the schema."""

    def __init__(self, message: str, call: LlmCall) -> None:
        super().__init__(message)
        self.call = call


class LlmCall(BaseModel):
    """What the audit records about every model call."""

    model: str
    prompt_version: str
    latency_ms: float
    input_tokens: int | None = None
    output_tokens: int | None = None
    outcome: str


def make_chat_model(settings: Settings) -> BaseChatModel | None:
    if not settings.llm_enabled:
        return None
    from langchain_ollama import ChatOllama

    return ChatOllama(
        model=settings.llm_model,
        base_url=settings.llm_base_url,
        temperature=0,
        format="json",
        num_predict=400,
        client_kwargs={"timeout": settings.llm_timeout_seconds},
    )


def model_name(model: BaseChatModel) -> str:
    return str(getattr(model, "model", None) or getattr(model, "model_name", None) or type(model).__name__)


async def ask_structured(
    model: BaseChatModel, messages: list[BaseMessage], schema: type[SchemaT], *, timeout: float, prompt_version: str
) -> tuple[SchemaT, LlmCall]:
    started = time.perf_counter()

    def record(outcome: str, usage: dict | None = None) -> LlmCall:
        return LlmCall(
            model=model_name(model),
            prompt_version=prompt_version,
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
            input_tokens=(usage or {}).get("input_tokens"),
            output_tokens=(usage or {}).get("output_tokens"),
            outcome=outcome,
        )

    try:
        reply = await asyncio.wait_for(model.ainvoke(messages), timeout=timeout)
    except TimeoutError:
        call = record("timeout")
        raise LlmFailure(f"no answer within {timeout:.0f}s", call) from None
    except Exception as error:  # connection refused, model not pulled, server error: all mean "no advice"
        call = record("unreachable")
        raise LlmFailure(f"{type(error).__name__}: {error}", call) from error
    usage = getattr(reply, "usage_metadata", None)
    text = reply.content if isinstance(reply.content, str) else json.dumps(reply.content)
    found = _JSON_OBJECT.search(text)
    try:
        answer = schema.model_validate_json(found.group(0) if found else text)
    except ValidationError as error:
        call = record("invalid_output", usage)
        raise LlmFailure(f"answer outside the schema: {error.errors()[0]['msg']}", call) from error
    return answer, record("ok", usage)


LLM_BACKOFF_SECONDS = 60.0


async def advise(
    model: BaseChatModel,
    verdicts: TtlCache,
    key: tuple,
    messages: list[BaseMessage],
    schema: type[SchemaT],
    *,
    timeout: float,
    prompt_version: str,
    ttl: float,
) -> tuple[SchemaT | None, dict, str | None]:
    """(answer, call figures for the audit, why there is no answer) with caching and a per-model backoff.

    A model that just failed is left alone for every caller for a minute rather
    than paying a timeout per symbol; answers are reused for `ttl` seconds.
    """
    name = model_name(model)
    down = verdicts.get(("llm-down", name))
    if down is not None:
        return None, {"model": name, "cached": True}, str(down)
    cached = verdicts.get(key)
    if cached is not None:
        answer, call = cached
        return answer, {**call, "cached": True}, None
    try:
        answer, call = await ask_structured(model, messages, schema, timeout=timeout, prompt_version=prompt_version)
    except LlmFailure as failure:
        verdicts.put(("llm-down", name), str(failure), LLM_BACKOFF_SECONDS)
        return None, failure.call.model_dump(), str(failure)
    verdicts.put(key, (answer, call.model_dump()), ttl)
    return answer, call.model_dump(), None
