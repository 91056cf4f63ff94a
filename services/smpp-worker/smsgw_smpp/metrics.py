"""Prometheus metrics of the SMPP worker (`smsgw_smpp_*`), labelled by bind."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# submit_sm_resp latency on loopback is ~0.1-1 ms; real SMSCs answer in 5-500 ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class SmppMetrics:
    """Every metric of the worker, registered in `registry` (one per service run)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.submits = Counter(
            "smsgw_smpp_submits",
            "submit_sm answered, by command_status",
            ["bind", "status"],
            registry=r,
        )
        self.jobs = Counter(
            "smsgw_smpp_jobs", "Send jobs handled, by outcome", ["bind", "outcome"], registry=r
        )
        self.window = Gauge(
            "smsgw_smpp_window_in_use", "submit_sm awaiting their response", ["bind"], registry=r
        )
        self.latency = Histogram(
            "smsgw_smpp_submit_latency_seconds",
            "submit_sm to submit_sm_resp",
            ["bind"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.receipts = Counter(
            "smsgw_smpp_receipts",
            "Delivery receipts received, by state",
            ["bind", "state"],
            registry=r,
        )
        self.receipts_unparsed = Counter(
            "smsgw_smpp_receipts_unparsed",
            "Receipts without a usable id (kept in logs)",
            ["bind"],
            registry=r,
        )
        self.inbound = Counter(
            "smsgw_smpp_inbound_parts", "Incoming SMS parts (deliver_sm)", ["bind"], registry=r
        )
        self.reconnects = Counter(
            "smsgw_smpp_reconnects", "Sessions lost and re-established", ["bind"], registry=r
        )
        self.duplicates = Counter(
            "smsgw_smpp_possible_duplicates",
            "submit_sm sent again after the first copy got no response (SMSC may have both)",
            ["bind"],
            registry=r,
        )
        self.held = Counter(
            "smsgw_smpp_deliveries_held",
            "deliver_sm answers kept back while the broker was away, by how they ended "
            "(confirmed: answered OK once the event was confirmed; refused: ESME_RX_T_APPN "
            "after event_hold)",
            ["bind", "outcome"],
            registry=r,
        )
        self.bad_pdus = Counter(
            "smsgw_smpp_bad_pdus", "Malformed or unknown PDUs from the SMSC", ["bind"], registry=r
        )
        self.throttled = Gauge(
            "smsgw_smpp_throttled",
            "1 while running below the configured rate",
            ["bind"],
            registry=r,
        )
        self.rate = Gauge(
            "smsgw_smpp_rate_limit",
            "Current submit rate limit (PDU/s, 0 = none)",
            ["bind"],
            registry=r,
        )
        self.bound = Gauge("smsgw_smpp_bound", "1 while bound", ["bind"], registry=r)
