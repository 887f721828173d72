"""Checkpoint serialisation: our section models dumped by pydantic, everything else as LangGraph does it.

A screen's exit checkpoint is ~46 KB of section models. LangGraph's serializer encodes each
model through Python hooks (`model_dump`, then a callback per nested model, datetime and
float list) and revives it by validating the dumped dict: ~2.6 ms a state each way here,
most of a checkpoint's cost on our side. Here pydantic dumps a whole section to plain
values in one call (Rust) and msgpack packs them natively (Rust): a fifth of the time.
Msgpack, not JSON: it keeps NaN and infinities, which pydantic's JSON writes as null.

Plain values are exact only where the schema types every value: validating them rebuilds an
equal object (a datetime travels as ISO text, and its field parses it back). A field typed
`Any` (an audit event's `detail` may hold a datetime, which would come back as text) or a
union (whose value may validate as another member) would not, so models with either, and
values that are not our models, go to LangGraph's serializer as before. Reading accepts
both, so checkpoints written before this module keep loading.

Blob type tags name the container and the class: `aitrader-sections:model:state.sections.MarketSection`,
`...:list:...`, `...:dict:...`. Only classes of the allowlist are revived; like LangGraph's
serializer, an unknown class comes back as the plain values, and a value that no longer
validates is constructed without validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, Literal

import ormsgpack
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from pydantic import BaseModel, TypeAdapter

TAG = "aitrader-sections"
_PACKING = ormsgpack.OPT_NON_STR_KEYS
Container = Literal["model", "list", "dict"]

# Schema nodes whose plain values may not validate back to the same value.
_INEXACT = frozenset({"any", "union", "tagged-union", "is-instance", "is-subclass", "callable", "json-or-python"})


def plain_exact(model: type[BaseModel]) -> bool:
    """Whether every value the model can hold comes back equal from its plain (python-mode) dump."""
    return not _has_inexact(model.__pydantic_core_schema__)


def _has_inexact(schema: Any) -> bool:
    if isinstance(schema, dict):
        kind = schema.get("type")  # a field named "type" maps to its schema, not a name
        if isinstance(kind, str) and kind in _INEXACT:
            return True
        return any(_has_inexact(value) for key, value in schema.items() if key not in ("serialization", "metadata", "ref"))
    if isinstance(schema, list | tuple):
        return any(_has_inexact(item) for item in schema)
    return False


@cache
def _adapter(container: Container, model: type[BaseModel]) -> TypeAdapter[Any]:
    shape: Any = {"model": model, "list": list[model], "dict": dict[str, model]}[container]  # type: ignore[valid-type]
    return TypeAdapter(shape)


class SectionSerializer(JsonPlusSerializer):
    def __init__(self, models: Sequence[type[BaseModel]]) -> None:
        super().__init__(allowed_msgpack_modules=list(models))
        self._exact = {model for model in models if plain_exact(model)}
        self._names = {f"{model.__module__}.{model.__qualname__}": model for model in models}

    def _shape(self, obj: Any) -> tuple[Container, type[BaseModel]] | None:
        """The container and model class of a value its plain dump carries exactly, else None."""
        kind = type(obj)
        if kind in self._exact:
            return "model", kind
        if kind is list and obj:
            first = type(obj[0])
            if first in self._exact and all(type(item) is first for item in obj):
                return "list", first
        elif kind is dict and obj:
            values = iter(obj.values())
            first = type(next(values))
            if first in self._exact and all(type(key) is str for key in obj) and all(type(v) is first for v in values):
                return "dict", first
        return None

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        shape = self._shape(obj)
        if shape is None:
            return super().dumps_typed(obj)
        container, model = shape
        try:
            blob = ormsgpack.packb(_adapter(container, model).dump_python(obj, round_trip=True), option=_PACKING)
        except (TypeError, ormsgpack.MsgpackEncodeError):  # a value msgpack has no type for (a set, a Decimal)
            return super().dumps_typed(obj)
        return f"{TAG}:{container}:{model.__module__}.{model.__qualname__}", blob

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        type_, blob = data
        if not type_.startswith(TAG + ":"):
            return super().loads_typed(data)
        values = ormsgpack.unpackb(blob, option=_PACKING)
        _, container, name = (type_.split(":", 2) + ["", ""])[:3]
        model = self._names.get(name)
        if model is None or container not in ("model", "list", "dict"):
            return values  # not ours to revive: the plain values, as LangGraph does
        try:
            return _adapter(container, model).validate_python(values)  # type: ignore[arg-type]
        except ValueError:
            return _construct(container, model, values)  # type: ignore[arg-type]


def _construct(container: Container, model: type[BaseModel], values: Any) -> Any:
    """What no longer validates (a model changed since), built as stored: LangGraph's fallback too."""
    if container == "model":
        return model.model_construct(**values)
    if container == "list":
        return [model.model_construct(**item) for item in values]
    return {key: model.model_construct(**item) for key, item in values.items()}
