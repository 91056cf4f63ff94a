"""Prometheus metrics of the inbound service (prefix `smsgw_inbound_`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_APPLIED = Counter(
    "smsgw_inbound_events_applied_total",
    "Status events handled, by reported state and result (applied, duplicate, parked…)",
    ["state", "result"],
)
PROJECTION_LAG = Histogram(
    "smsgw_inbound_projection_lag_seconds",
    "Time from an event's occurrence to its projection into the store",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
BATCH_SIZE = Histogram(
    "smsgw_inbound_batch_size",
    "Status events applied per transaction",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000),
)
UNMATCHED_REPORTS = Counter(
    "smsgw_inbound_unmatched_reports_total",
    "Delivery reports parked because no submitted part matched them (yet)",
)
PENDING_REPORTS = Gauge(
    "smsgw_inbound_pending_reports", "Delivery reports waiting in the store for their message"
)
EXPIRED = Counter("smsgw_inbound_expired_total", "Messages marked expired by validity")
INBOUND_RECEIVED = Counter(
    "smsgw_inbound_received_parts_total",
    "Incoming SMS parts handled, by result (stored, assembled, part, duplicate)",
    ["result"],
)
REASSEMBLY_IN_PROGRESS = Gauge(
    "smsgw_inbound_reassembly_in_progress", "Long incoming SMS waiting for more parts"
)
INCOMPLETE_DELIVERED = Counter(
    "smsgw_inbound_incomplete_messages_total",
    "Long incoming SMS delivered incomplete after the reassembly timeout",
)
HEARTBEATS = Counter(
    "smsgw_inbound_heartbeats_total",
    "Heartbeats handled, by whether the state changed",
    ["changed"],
)
WEBHOOK_ATTEMPTS = Counter(
    "smsgw_inbound_webhook_attempts_total",
    "Webhook delivery attempts by outcome (succeeded, retry, dead, refused)",
    ["outcome"],
)
WEBHOOK_LATENCY = Histogram(
    "smsgw_inbound_webhook_latency_seconds",
    "Duration of one webhook HTTP attempt",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
WEBHOOK_BACKLOG = Gauge("smsgw_inbound_webhook_backlog", "Webhook deliveries due and not yet made")
RETENTION_DELETED = Counter(
    "smsgw_inbound_retention_deleted_total",
    "Rows deleted for being older than their retention ([retention]), by policy",
    ["policy"],
)
TABLE_BYTES = Gauge(
    "smsgw_store_table_bytes",
    "Bytes on disk of a store table (indexes and TOAST included), measured each retention pass",
    ["table"],
)
POISON_ISOLATED = Counter(
    "smsgw_inbound_poison_isolated_total",
    "Events that failed on their own in the store while their batch was applied without them",
)
