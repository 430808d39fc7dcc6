"""The relay's own Prometheus counters, served at GET /metrics: events received (by result),
rows settled by the forwarder (by status) and the lag from receipt to settlement."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from salesflow.store.inbox import InboxEvent, InboxStatus

LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


class RelayMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.received = Counter(
            "salesflow_relay_events_received",
            "Bitrix24 events POSTed to the relay, by event and result",
            ["event", "result"],
            registry=self.registry,
        )
        self.settled = Counter(
            "salesflow_relay_rows_settled",
            "Inbox rows the forwarder settled, by status (pending = retried later)",
            ["status"],
            registry=self.registry,
        )
        self.lag = Histogram(
            "salesflow_relay_forward_lag_seconds",
            "Seconds from an event's receipt to its row being forwarded or ignored",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )

    def received_event(self, event: str, result: str) -> None:
        self.received.labels(event=event or "?", result=result).inc()

    def settled_row(self, row: InboxEvent, status: InboxStatus) -> None:
        self.settled.labels(status=status.value).inc()
        if status in (InboxStatus.FORWARDED, InboxStatus.IGNORED):
            received = row.received_at
            if received.tzinfo is None:
                received = received.replace(tzinfo=UTC)
            self.lag.observe(max(0.0, (datetime.now(UTC) - received).total_seconds()))

    def render(self) -> bytes:
        return generate_latest(self.registry)
