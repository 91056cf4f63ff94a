"""smsgw GSM modem worker and simulator."""
