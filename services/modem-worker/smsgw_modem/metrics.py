"""Prometheus metrics of the modem worker (default registry, label `modem`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from prometheus_client import Counter, Gauge, Histogram


@dataclass(frozen=True)
class ModemMetrics:
    """Every metric the modem worker exports."""

    sends: Counter
    send_seconds: Histogram
    parts: Counter
    received: Counter
    dlrs: Counter
    signal_dbm: Gauge
    connected: Gauge
    resets: Counter
    reconnects: Counter
    garbage: Counter
    ussd: Counter


@cache
def metrics() -> ModemMetrics:
    """The process-wide metrics, created on first use (not on import)."""
    return ModemMetrics(
        sends=Counter("smsgw_modem_sends", "Send jobs by outcome", ["modem", "outcome"]),
        send_seconds=Histogram(
            "smsgw_modem_send_seconds",
            "Time to send every part of a job",
            ["modem"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 21, 60),
        ),
        parts=Counter("smsgw_modem_parts_sent", "SMS parts accepted by the modem", ["modem"]),
        received=Counter("smsgw_modem_incoming", "Incoming SMS parts published", ["modem"]),
        dlrs=Counter("smsgw_modem_dlrs", "Delivery reports by state", ["modem", "state"]),
        signal_dbm=Gauge("smsgw_modem_signal_dbm", "Signal strength (+CSQ)", ["modem"]),
        connected=Gauge("smsgw_modem_connected", "1 when connected and registered", ["modem"]),
        resets=Counter("smsgw_modem_resets", "Resets after the modem stopped answering", ["modem"]),
        reconnects=Counter("smsgw_modem_reconnects", "Port (re)opens", ["modem"]),
        garbage=Counter("smsgw_modem_garbage_lines", "Junk lines from the port skipped", ["modem"]),
        ussd=Counter("smsgw_modem_ussd", "USSD/balance requests by result", ["modem", "ok"]),
    )
