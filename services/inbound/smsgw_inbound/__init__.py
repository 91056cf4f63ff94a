"""smsgw inbound projection and webhooks."""
