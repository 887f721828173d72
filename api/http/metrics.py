"""Prometheus metrics of one server process: runs, node latency, approvals, orders, notifications."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from api.runs import RunOutcome
from tools.audit_log import AuditRecord

# Nodes run from ~1 ms (gates) to seconds (an LLM verdict, a slow exchange).
NODE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """A registry per app, so two apps in one process (tests) never share or clash over series."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.runs_started = Counter("aitrader_runs_started", "Runs started through this server.", registry=self.registry)
        self.runs_finished = Counter(
            "aitrader_runs_finished", "Runs that stopped driving, by outcome (decision, paused or failed).", ["outcome"], registry=self.registry
        )
        self.node_seconds = Histogram("aitrader_node_seconds", "Wall time of each node task.", ["node"], buckets=NODE_BUCKETS, registry=self.registry)
        self.orders = Counter("aitrader_orders", "Order events written by execution, by event and verdict.", ["event", "verdict"], registry=self.registry)
        self.events = Counter("aitrader_audit_events", "Audit rows written, by event type.", ["event"], registry=self.registry)
        self.pending_approvals = Gauge("aitrader_pending_approvals", "Runs waiting at the approval interrupt.", registry=self.registry)
        self.open_positions = Gauge("aitrader_open_positions", "Brackets pending or open in the ledger.", registry=self.registry)
        self.running = Gauge("aitrader_runs_in_flight", "Runs being driven by this server now.", registry=self.registry)
        self.sse_clients = Gauge("aitrader_sse_clients", "Open event streams.", registry=self.registry)

    def node_finished(self, node: str, seconds: float) -> None:
        self.node_seconds.labels(node=node).observe(seconds)

    def records_written(self, records: list[AuditRecord]) -> None:
        for record in records:
            self.events.labels(event=record.event).inc()
            if record.event in ("ORDER_REQUEST", "ORDER_FILLED"):
                self.orders.labels(event=record.event, verdict=record.verdict).inc()

    def run_finished(self, outcome: RunOutcome | None, failure: BaseException | None) -> None:
        if failure is not None or outcome is None:
            label = "failed"
        elif outcome.pending is not None:
            label = "paused"
        else:
            label = outcome.decision.action if outcome.decision else "none"
        self.runs_finished.labels(outcome=label).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
