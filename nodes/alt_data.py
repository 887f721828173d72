"""L2 alternative data: sentiment / on-chain inputs when configured; otherwise says there are none."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from nodes.common import event, services
from state import AnalysisState
from state.sections import AlternativeDataReport, FeaturesSection
from tools.alt_data import configured_providers
from tools.context import Services

NODE = "alt_data"


async def alt_data(state: AnalysisState, runtime: Runtime[Services]) -> dict[str, Any]:
    request, market = state["request"], state["market"]
    names = services(runtime, request).settings.alt_data_providers
    values: dict[str, float] = {}
    notes: list[str] = []
    for provider in configured_providers(names):
        try:
            values.update({f"{provider.name}.{k}": v for k, v in (await provider.fetch(request.symbol, market.as_of)).items()})
        except Exception as error:  # an outside feed failing is information, not a reason to stop
            notes.append(f"{provider.name} failed: {error}")
    note = "; ".join(notes) if notes else ("" if names else "no alternative data configured")
    report = AlternativeDataReport(
        as_of=market.as_of, produced_by=NODE, available=bool(values), providers=names, values=values, note=note
    )
    verdict = f"{len(values)} figures" if values else "NONE"
    return {"features": FeaturesSection(alternative=report), "audit": [event(NODE, "ANALYSIS_UPDATE", verdict, market.as_of, {"note": note})]}
