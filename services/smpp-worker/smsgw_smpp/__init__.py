"""smsgw SMPP worker and SMSC simulator."""
