"""The relay's own Prometheus counters, served at GET /metrics: events received (by result),
rows settled by the forwarder (by status) and the lag from receipt to settlement.

Every label value comes from a closed set — the known event names and OTHER, the results
below — so no request, forged or not, adds a series.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from salesflow.store.inbox import InboxEvent, InboxStatus

LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
OTHER = "other"
RESULTS = frozenset({"recorded", "duplicate", "rejected", "bad", "unavailable"})


class RelayMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, known_events: Iterable[str] = ()) -> None:
        self.known_events = frozenset(known_events)
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

    def event_label(self, event: str) -> str:
        name = event.strip().upper()
        return name if name in self.known_events else OTHER

    def received_event(self, event: str, result: str) -> None:
        label = result if result in RESULTS else OTHER
        self.received.labels(event=self.event_label(event), result=label).inc()

    def settled_row(self, row: InboxEvent, status: InboxStatus) -> None:
        self.settled.labels(status=status.value).inc()
        if status in (InboxStatus.FORWARDED, InboxStatus.IGNORED):
            received = row.received_at
            if received.tzinfo is None:
                received = received.replace(tzinfo=UTC)
            self.lag.observe(max(0.0, (datetime.now(UTC) - received).total_seconds()))

    def render(self) -> bytes:
        return generate_latest(self.registry)
