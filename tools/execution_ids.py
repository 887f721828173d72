"""Client order ids: derived from the run, never random, so a broker can refuse a duplicate."""

from __future__ import annotations

import hashlib


def client_order_id(thread_id: str | None, task_id: str) -> str:
    """Stable across retries and resumes of one execution task (LangGraph keeps its task id)."""
    digest = hashlib.sha256(f"{thread_id}:{task_id}".encode()).hexdigest()[:24]
    return f"at-{digest}"
